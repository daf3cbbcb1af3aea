"""Every trained method family through the shared machinery: training, checkpoints, scoring,
the registry and detection on a real clip; plus known-answer tests of the window scoring."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_neural import write_clip

from avsync.errors import AvsyncError
from avsync.inference import analyse_audio, analyse_video, synchronise
from avsync.models.neural import NeuralInput
from avsync.models.registry import available_models, create_model, needs_neural
from avsync.models.scoring import NeuralSyncMethod
from avsync.models.syncnet import count_parameters
from avsync.models.trained import TRAINED_METHODS
from avsync.train import SyncDataset, TaskConfig, TrainConfig, build_model, seed_everything, train
from avsync.train.checkpoint import MODEL_FAMILIES, load_checkpoint
from avsync.train.tasks import task_loss

FAMILIES = sorted(MODEL_FAMILIES)
SHIFTS = np.arange(-15, 16)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    d = tmp_path_factory.mktemp("cache")
    return {"train": [write_clip(d / f"tr{i}.npz", i, f"spk{i}") for i in range(3)],
            "val": [write_clip(d / f"va{i}.npz", 100 + i, f"val{i}") for i in range(1)]}


def _datasets(model, cache, task):
    shape = {"frames": model.config.frames, "audio_rows": model.config.audio_rows}
    return (SyncDataset(cache["train"], model.visual_kind, task, **shape),
            SyncDataset(cache["val"], model.visual_kind, task, **shape))


@pytest.fixture(scope="module", params=FAMILIES)
def trained(request, cache, tmp_path_factory):
    """(method, model, result, checkpoint path) after a tiny CPU run with the method's own loss."""
    torch.set_num_threads(2)
    seed_everything(0)
    model = build_model(request.param, "debug")
    train_ds, val_ds = _datasets(model, cache, TaskConfig())
    cfg = TrainConfig(steps=12, batch_size=8, lr=2e-3, warmup_steps=2, eval_every=6, log_every=3,
                      patience=0, eval_max_windows=60)
    out = tmp_path_factory.mktemp(request.param)
    result = train(model, train_ds, val_ds, TaskConfig(), cfg, "cpu", out_dir=out, log=None)
    return request.param, model, result, out / "model.safetensors"


def test_every_family_is_registered():
    names = {m.name for m in available_models() if m.kind == "trained"}
    assert set(TRAINED_METHODS) == names == set(MODEL_FAMILIES)


def test_training_runs_and_checkpoints(trained):
    method, model, result, ckpt = trained
    assert result.steps_run == 12 and [h["step"] for h in result.history][-1] == 12
    assert all(np.isfinite(h["loss"]) for h in result.history)
    assert 0.0 <= result.best["val_acc"] <= 1.0 and result.best["val_windows"] > 0
    assert (ckpt.parent / "curves.png").stat().st_size > 0
    loaded, config, meta = load_checkpoint(ckpt)
    assert meta["method"] == method and config == model.config
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a.cpu(), b)


@pytest.mark.parametrize("method,loss",
                         [(m, "auto") for m in FAMILIES] + [("c3", "bce"), ("vocalist", "bce")])
def test_loss_decreases_on_a_fixed_batch(cache, method, loss):
    """Every family (and the papers' BCE on single pairs for the pair classifiers) can fit one batch."""
    task = TaskConfig(augment=False, loss=loss)
    seed_everything(1)
    model = build_model(method, "debug")
    ds, _ = _datasets(model, cache, task)
    batch = ds.batch(ds.sample_indices(np.random.default_rng(0), 4), "cpu")
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        torch.manual_seed(0)  # the same pair/shift draws every step
        loss, stats = task_loss(model, model, batch, task)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], (method, losses[0], losses[-1])
    if task.loss_for(model.output) == "pm" and model.output == "pair":
        assert 0 <= stats["acc"] <= 1
        if getattr(model, "similarity", None) is None:  # 1 positive among 29 equal logits
            assert losses[0] == pytest.approx(np.log(29), abs=0.5)


@pytest.mark.parametrize("method", ["c3", "vocalist"])
def test_pair_pm_loss_starts_at_ln29_without_similarity_skip(cache, method):
    """The paper heads (no similarity skip) give near-equal logits at init: the multi-way loss
    over the in-sync pair and the 28 shifts |k| >= 2 starts at ln 29."""
    import dataclasses

    task = TaskConfig(augment=False, loss="pm")
    seed_everything(1)
    base = build_model(method, "debug")
    off = {"similarity_dim": 0} if method == "c3" else {"similarity": False}
    model = type(base)(dataclasses.replace(base.config, **off))
    assert model.similarity is None and count_parameters(model) < count_parameters(base)
    ds, _ = _datasets(model, cache, task)
    batch = ds.batch(ds.sample_indices(np.random.default_rng(0), 4), "cpu")
    loss, _ = task_loss(model, model, batch, task)
    assert loss.item() == pytest.approx(np.log(29), abs=0.3)


def test_checkpoint_path_as_method_and_scoring(trained, cache):
    method, _, _, ckpt = trained
    scorer = create_model(str(ckpt))
    assert needs_neural(scorer) and scorer.name == method
    with np.load(cache["val"][0]) as z:
        ninp = NeuralInput(float(z["fps"]), z["frame_times_s"], z["mouth"], z["lips"], z["blend"],
                           z["logmel"], float(z["audio_start_s"]), z["valid"])
    scores = scorer.score(ninp, SHIFTS)
    assert scores.shape == (31,) and np.isfinite(scores).all()
    # Cached outputs (warm scorer) equal a fresh scorer's on windows and null rolls.
    for derived in (ninp.window(10, 110), ninp.rolled(40)):
        fresh = NeuralSyncMethod(scorer.model, name=method, stride=scorer.stride)
        np.testing.assert_allclose(scorer.score(derived, SHIFTS), fresh.score(derived, SHIFTS), atol=1e-5)


def test_missing_weights_error_is_one_line(monkeypatch, tmp_path):
    import avsync.models.trained as trained_mod

    monkeypatch.setattr(trained_mod, "weights_path", lambda name: tmp_path / f"{name}.safetensors")
    with pytest.raises(AvsyncError, match="no trained weights are shipped"):
        create_model("vocalist")
    with pytest.raises(AvsyncError, match="checkpoint not found"):
        create_model(str(tmp_path / "nope.safetensors"))


@pytest.fixture(scope="module")
def example_analysis(example_clip):
    return analyse_video(example_clip, keep_crops=True), analyse_audio(example_clip)


def test_synchronise_real_clip_with_every_family(trained, example_analysis):
    """The registry path of `avsync detect`: crops kept, NeuralInput built, curve + confidence."""
    method, _, _, ckpt = trained
    analysis, audio = example_analysis
    assert audio.logmel is not None and analysis.tracks[0].mouth
    tracks, cs = synchronise(analysis, audio, 25.0, create_model(str(ckpt)), drift=False)
    assert len(tracks) >= 1 and cs.scores.shape == (31,) and np.isfinite(cs.scores).all()
    assert np.isfinite(cs.confidence) and -15 <= cs.offset_frames <= 15


# ----------------------------------------------------------------------------- known answers

class _Cfg:
    frames, audio_rows, max_shift, max_offset = 5, 20, 15, 9


class Oracle(torch.nn.Module):
    """A hand-made model of a given output kind: correlation of per-frame brightness and
    per-frame audio level (what the synthetic clip below encodes)."""

    visual_kind = "mouth"

    def __init__(self, output: str, late: int = 0) -> None:
        super().__init__()
        self.output, self.config, self.late = output, _Cfg(), late

    @staticmethod
    def _corr(video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        v = video.mean((2, 3))
        a = audio.reshape(len(audio), -1, 4, audio.shape[-1]).mean((2, 3))
        v, a = v - v.mean(1, keepdim=True), a - a.mean(1, keepdim=True)
        return (v * a).sum(1) / (v.norm(dim=1) * a.norm(dim=1) + 1e-6)

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        if self.output == "pair":
            return 10 * self._corr(video, audio)
        if self.output == "regression":
            return torch.full((len(video),), float(self.late))
        windows = audio.unfold(1, 20, 4).transpose(-1, -2)  # (B, 31, 20, mels)
        return torch.stack([10 * self._corr(video, windows[:, k]) for k in range(windows.shape[1])], 1)


def _coded_input(late: int, n_frames: int = 120) -> NeuralInput:
    rng = np.random.default_rng(5)
    e = rng.uniform(0, 1, n_frames + 40)
    mouth = np.repeat((40 + 170 * e[:n_frames])[:, None, None], 48, 1).repeat(48, 2).astype(np.uint8)
    logmel = np.repeat(e, 4)[:, None] + 0.01 * rng.standard_normal((4 * len(e), 40))
    times = np.arange(n_frames) / 25.0
    return NeuralInput(25.0, times, mouth, None, None, logmel.astype(np.float32), late / 25.0)


@pytest.mark.parametrize("output", ["pair", "offsets", "regression"])
@pytest.mark.parametrize("late", [4, -6])
def test_window_scoring_recovers_the_planted_shift(output, late):
    """Audio LATE by ``late`` frames -> the averaged curve peaks at +late for each output kind."""
    scorer = NeuralSyncMethod(Oracle(output, late), name=output)
    scores = scorer.score(_coded_input(late), SHIFTS)
    assert int(SHIFTS[np.argmax(scores)]) == late
    assert scorer.confidence(_coded_input(late), SHIFTS) > 0


def test_regression_validation_plants_offsets(cache):
    """A constant-0 regressor must not look perfect: it is right only for planted |d| <= 1."""
    from avsync.train.metrics import clip_offset_counts

    class Constant(torch.nn.Module):
        visual_kind, output = "flow", "regression"

        def __init__(self):
            super().__init__()
            self.config = build_model("wlos", "debug").config

        def forward(self, video, audio):
            return torch.zeros(len(video))

    model = Constant()
    ds = SyncDataset(cache["val"], "flow", TaskConfig(), frames=10, audio_rows=40)
    counts = clip_offset_counts(model, ds.clips[0], TaskConfig(), "cpu", max_windows=60)
    assert counts["n"] > 0 and counts["correct"] / counts["n"] == pytest.approx(3 / 19)


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"garbage")
    with pytest.raises(AvsyncError, match="not a readable safetensors checkpoint"):
        create_model(str(bad))
