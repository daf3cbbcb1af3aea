"""Neural sync methods on a synthetic training cache: models, Perfect Match, loop, checkpoints.

The synthetic clips follow the training-cache format; their mouth opening (a dark ellipse in
the crop, the lip ellipse's height, jawOpen) follows the log-mel energy of the aligned audio,
so the sync task is learnable in a few dozen CPU steps.
"""

from __future__ import annotations

import importlib.util
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.signal import butter, sosfiltfilt

from avsync.errors import AvsyncError
from avsync.models.neural import NeuralInput, PreparedClip, frame_clock_audio
from avsync.models.scoring import NeuralSyncMethod, syncnet_confidence
from avsync.models.syncnet import count_parameters
from avsync.train import (
    SyncDataset,
    TaskConfig,
    TrainConfig,
    build_model,
    load_checkpoint,
    save_checkpoint,
    seed_everything,
    train,
)
from avsync.train.loop import CHANCE_ACC
from avsync.train.tasks import augment, task_loss

FPS, HOP = 25.0, 0.01
METHODS = ["syncnet", "landmark"]
KIND = {"syncnet": "mouth", "landmark": "lips"}
SHIFTS = np.arange(-15, 16)
ROOT = Path(__file__).resolve().parents[1]


def envelope(n_rows: int, rng: np.random.Generator) -> np.ndarray:
    """Speech-like loudness in [0, 1] on the 10 ms grid: 1-7 Hz syllables with pauses."""
    sos = butter(4, [1.0, 7.0], btype="band", fs=1 / HOP, output="sos")
    x = sosfiltfilt(sos, rng.standard_normal(n_rows + 400))[200:-200]
    gate = sosfiltfilt(butter(2, 0.4, fs=1 / HOP, output="sos"), rng.standard_normal(n_rows + 400))
    gate = gate[200:-200] / gate.std() > -0.6
    return gate / (1 + np.exp(-2.5 * x / x.std()))


def write_clip(path: Path, seed: int, speaker: str, n_frames: int = 200, lead_s: float = 0.4) -> Path:
    """One synthetic cache npz whose mouth opens with the aligned audio's loudness."""
    rng = np.random.default_rng(seed)
    a0, n_rows = -lead_s, 4 * n_frames + int(round(2 * lead_s / HOP))
    e = envelope(n_rows, rng)
    spec = np.convolve(rng.uniform(0.5, 1.5, 44), np.ones(5) / 5, "valid")
    logmel = -10 + 7 * e[:, None] * spec[None, :] + 0.4 * rng.standard_normal((n_rows, 40))
    t = np.arange(n_frames) / FPS
    r = np.rint((t - a0) / HOP).astype(int)
    o = np.mean([e[r + j] for j in range(4)], axis=0)  # opening of each frame
    yy, xx = np.mgrid[0:48, 0:48].astype(float)
    bg = 140 + 25 * np.sin(xx / rng.uniform(3, 8) + rng.uniform(0, 6)) * np.cos(yy / rng.uniform(3, 8))
    inside = ((xx - 24) / 14) ** 2 + ((yy[None] - 24) / (1.5 + 12 * o)[:, None, None]) ** 2 <= 1
    mouth = np.where(inside, 30.0, bg[None]) + 6 * rng.standard_normal((n_frames, 48, 48))
    th = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    ring = lambda w, h0, h1: np.stack(  # noqa: E731
        [np.broadcast_to(w * np.cos(th), (n_frames, 20)), (h0 + h1 * o)[:, None] * np.sin(th)], -1)
    lips = rng.uniform(0.8, 1.2) * np.concatenate([ring(1.0, 0.25, 0.5), ring(0.7, 0.05, 0.45)], 1)
    lips = lips + 0.01 * rng.standard_normal(lips.shape)
    blend = 0.1 * rng.random((n_frames, 10))
    blend[:, 0], blend[:, 1] = o, 1 - o
    valid = np.ones(n_frames, bool)
    valid[rng.choice(n_frames, 5, replace=False)] = False
    np.savez_compressed(
        path, fps=np.float64(FPS), frame_times_s=t, mouth=np.clip(mouth, 0, 255).astype(np.uint8),
        lips=lips.astype(np.float16), blend=blend.astype(np.float16),
        signals=rng.random((n_frames, 19)).astype(np.float32), valid=valid,
        logmel=logmel.astype(np.float16), audio_start_s=np.float64(a0), speaker=np.array(speaker),
        source=np.array("synthetic"), path=np.array(f"synthetic/{speaker}/{seed}.mp4"))
    return path


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> dict[str, list[Path]]:
    d = tmp_path_factory.mktemp("cache")
    return {"train": [write_clip(d / f"tr{i}.npz", i, f"spk{i}") for i in range(4)],
            "val": [write_clip(d / f"va{i}.npz", 100 + i, f"val{i}") for i in range(2)]}


@pytest.fixture(scope="module", params=METHODS)
def trained(request, cache):
    """(method, model, train result, val dataset) after 40 Perfect-Match steps on CPU."""
    method = request.param
    torch.set_num_threads(2)
    task = TaskConfig()
    train_ds = SyncDataset(cache["train"], KIND[method], task)
    val_ds = SyncDataset(cache["val"], KIND[method], task)
    seed_everything(0)
    model = build_model(method, "debug")
    cfg = TrainConfig(steps=40, batch_size=16, lr=3e-3, warmup_steps=5, eval_every=20, log_every=5,
                      patience=0)
    result = train(model, train_ds, val_ds, task, cfg, "cpu", log=None)
    return method, model, result, val_ds


@pytest.mark.parametrize("method", METHODS)
def test_forward_shapes_and_unit_norm(method):
    model = build_model(method, "debug").eval()
    video = torch.randn(3, 5, 48, 48) if method == "syncnet" else torch.randn(3, 5, 90)
    v, a = model(video, torch.randn(3, 20, 40))
    assert v.shape == a.shape == (3, model.config.embed_dim)
    torch.testing.assert_close(v.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(a.norm(dim=1), torch.ones(3))
    assert count_parameters(model) < 20_000
    assert 100_000 <= count_parameters(build_model(method, "small")) <= 300_000


def test_dataset_alignment_and_candidates(tmp_path):
    """The positive candidate is the audio at the window's own time; shifts step 4 rows."""
    path = write_clip(tmp_path / "c.npz", 7, "x", n_frames=60)
    ds = SyncDataset([path], "lips", TaskConfig(group=1))
    clip = ds.clips[0]
    i = len(ds) // 2
    s = int(ds.starts[i])
    visual, span, weight = ds[i]
    assert visual.shape == (1, 5, 90) and weight.shape == (1,) and span.shape == (20 + 2 * 60, 40)
    q = int(np.rint((s / FPS + 0.4) / HOP))  # 10 ms row of frame s (audio starts at -0.4 s)
    np.testing.assert_array_equal(span[60:80], clip.audio[q:q + 20])  # k = 0 at 15 * 4 rows
    np.testing.assert_array_equal(span[64:84], clip.audio[q + 4:q + 24])  # k = +1: audio later
    # Groups of 4 windows 2 frames apart share one span; member g's k = 0 is 8 g rows later.
    dsg = SyncDataset([path], "lips", TaskConfig(group=4, group_stride=2))
    visual, span, weight = dsg[len(dsg) // 2]
    s = int(dsg.starts[len(dsg) // 2])
    assert visual.shape == (4, 5, 90) and span.shape == (20 + 2 * 60 + 4 * 6, 40)
    for g in range(4):
        np.testing.assert_array_equal(visual[g], clip.visual[s + 2 * g: s + 2 * g + 5])
        q = int(clip.starts[s + 2 * g])
        np.testing.assert_array_equal(span[60 + 8 * g: 80 + 8 * g], clip.audio[q:q + 20])
    # At 30 fps the frame clock has 120 rows per second, read from the nearest 10 ms row.
    fc = frame_clock_audio(np.arange(100, dtype=np.float32)[:, None], 0.0, 30.0)
    np.testing.assert_array_equal(fc[:7, 0], [0, 1, 2, 2, 3, 4, 5])


@pytest.mark.parametrize("loss", ["pm", "bce", "contrastive"])
def test_grouped_loss_matches_independent_windows(cache, loss):
    """Sharing candidate audio inside a group gives the same loss as embedding each window."""
    seed_everything(3)
    model = build_model("landmark", "debug").eval()
    grouped = SyncDataset(cache["train"][:1], "lips", TaskConfig(loss=loss, group=3, group_stride=2))
    single = SyncDataset(cache["train"][:1], "lips", TaskConfig(loss=loss, group=1))
    anchors = np.array([0, 5, 9])
    gb = grouped.batch(anchors, "cpu")
    starts = (grouped.starts[anchors][:, None] + np.array([0, 2, 4])).ravel()
    sb = single.batch(np.searchsorted(single.starts, starts), "cpu")
    torch.testing.assert_close(gb.video, sb.video)
    torch.manual_seed(0)
    lg, _ = task_loss(model, model, gb, grouped.task)
    torch.manual_seed(0)
    ls, _ = task_loss(model, model, sb, single.task)
    torch.testing.assert_close(lg, ls)


def test_augmentation_keeps_shapes(cache):
    for kind in ("mouth", "lips"):
        ds = SyncDataset(cache["train"][:1], kind, TaskConfig())
        b = ds.batch(np.arange(4), "cpu")
        out = augment(b, kind, TaskConfig().aug)
        assert out.video.shape == b.video.shape and out.span.shape == b.span.shape
        assert torch.isfinite(out.video).all() and torch.isfinite(out.span).all()


def test_bce_option_starts_at_ln2(cache):
    """The pair loss starts at ln 2 = 0.693 (the plateau Perfect Match avoids)."""
    task = TaskConfig(loss="bce", augment=False)
    ds = SyncDataset(cache["train"], "lips", task)
    seed_everything(1)
    model = build_model("landmark", "debug")
    loss, stats = task_loss(model, model, ds.batch(np.arange(0, len(ds), 7), "cpu"), task)
    assert abs(stats["loss"] - np.log(2)) < 0.1
    loss.backward()


def test_training_learns(trained):
    method, _, result, _ = trained
    losses = [h["loss"] for h in result.history]
    assert np.mean(losses[-2:]) < losses[0] - 0.3, losses
    assert result.best["val_acc"] > CHANCE_ACC + 0.1, result.best
    assert result.best["val_acc_ctx15"] > 0.5, result.best


def test_checkpoint_roundtrip(trained, tmp_path):
    method, model, result, val_ds = trained
    path = save_checkpoint(tmp_path / "m.safetensors", model, {"val_acc": result.best["val_acc"]})
    loaded, config, meta = load_checkpoint(path)
    assert config == model.config and type(config) is type(model.config)
    assert meta["method"] == method and meta["preprocess"]["frames"] == 5
    assert meta["metrics"]["val_acc"] == pytest.approx(result.best["val_acc"])
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(AvsyncError, match="not an avsync"):
        load_checkpoint(tmp_path / "other.safetensors")
    model.eval()
    video = torch.randn(4, 5, 48, 48) if method == "syncnet" else torch.randn(4, 5, 90)
    audio = torch.randn(4, 20, 40)
    with torch.no_grad():
        for x, y in zip(model(video, audio), loaded(video, audio), strict=True):
            torch.testing.assert_close(x, y, rtol=0, atol=0)


def _neural_input(path: Path, late_frames: int) -> NeuralInput:
    with np.load(path) as z:
        return NeuralInput(float(z["fps"]), z["frame_times_s"], z["mouth"], z["lips"], z["blend"],
                           z["logmel"], float(z["audio_start_s"]) + late_frames / FPS, z["valid"])


@pytest.mark.parametrize("late", [4, -7])
def test_recovers_planted_shift(trained, cache, late):
    """Audio made LATE by ``late`` frames -> the distance curve's minimum at +late."""
    method, model, _, _ = trained
    scorer = NeuralSyncMethod(model, name=method)
    ninp = _neural_input(cache["val"][0], late)
    scores = scorer.score_neural(ninp, SHIFTS)
    assert scores.shape == (31,) and np.isfinite(scores).all()
    assert abs(int(SHIFTS[np.argmax(scores)]) - late) <= 1
    assert scorer.confidence(ninp, SHIFTS) > 0
    # The registry protocol: a SyncInput-like object carrying the NeuralInput, windows, nulls.
    carrier = type("Carrier", (), {"neural": ninp})()
    np.testing.assert_allclose(scorer.score(carrier, SHIFTS), scores)
    part = ninp.window(20, 120)
    assert part.n_frames == 100 and part.lip_stats is not None  # whole-track lip statistics
    assert np.isfinite(scorer.score(part, SHIFTS)).all()
    # Cached window/audio embeddings (warm scorer) give what a fresh scorer computes.
    for derived in (part, ninp.rolled(50), part.rolled(-7)):
        np.testing.assert_allclose(scorer.score(derived, SHIFTS),
                                   NeuralSyncMethod(model).score_neural(derived, SHIFTS), atol=1e-5)


def test_score_needs_neural_input():
    scorer = NeuralSyncMethod(build_model("landmark", "debug"))
    with pytest.raises(AvsyncError, match="NeuralInput"):
        scorer.score(object(), SHIFTS)
    assert syncnet_confidence(np.array([3.0, 1.0, 3.0, 2.0])) == pytest.approx(1.5)
    assert syncnet_confidence(np.array([[3.0, 1.0, 3.0], [3.0, 1.0, 3.0]])) == pytest.approx(2.0)


def test_short_track_without_windows(cache):
    model = build_model("syncnet", "debug")
    ninp = _neural_input(cache["val"][0], 0).window(0, 3)
    assert np.array_equal(NeuralSyncMethod(model).score_neural(ninp, SHIFTS), np.zeros(31))
    clip = PreparedClip.from_input("mouth", ninp)
    assert clip.visual.shape == (3, 48, 48)


def test_split_matching_by_path_suffix(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_train", ROOT / "benchmarks" / "train.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.same_clip("/data/realclips/LipNet/a/b.mpg", "LipNet/a/b.mpg")
    assert mod.same_clip("realclips/LipNet/a/b.mpg", "LipNet/a/b.mpg")
    assert not mod.same_clip("/x/LipNet/a/bb.mpg", "LipNet/a/b.mpg")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, cache: dict, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    task = TaskConfig()
    train_ds = SyncDataset(cache["train"], "lips", task)
    val_ds = SyncDataset(cache["val"], "lips", task)
    seed_everything(0)
    model = build_model("landmark", "debug")
    cfg = TrainConfig(steps=4, batch_size=8, warmup_steps=1, eval_every=4, log_every=2, patience=0)
    result = train(model, train_ds, val_ds, task, cfg, "cpu", out_dir=Path(out) / "run", log=None)
    torch.save({"params": {k: p.detach() for k, p in model.named_parameters()},
                "val_acc": result.best["val_acc"]}, Path(out) / f"rank{rank}.pt")


def test_ddp_two_process_gloo(cache, tmp_path):
    """torchrun-style 2-process CPU run: same weights on both ranks, one writer."""
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, _free_port(), cache, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    for k, p in r0["params"].items():
        torch.testing.assert_close(p, r1["params"][k], rtol=0, atol=0)
    assert r0["val_acc"] == r1["val_acc"]  # metrics are all-reduced
    assert (tmp_path / "run" / "model.safetensors").is_file()
    assert (tmp_path / "run" / "curves.png").is_file()
    assert not (tmp_path / "model.safetensors").exists()


def test_valid_window_starts_stride_counts_from_the_first_valid_window():
    """A 13-frame lip-flow input (frame 0 invalid) scored by a 10-frame model with stride 4
    still gets a window; stride spacing starts at the first valid window."""
    from avsync.models.neural import valid_window_starts

    valid = np.ones(13, bool)
    valid[0] = False
    assert valid_window_starts(valid, 10, 4).tolist() == [1]
    assert valid_window_starts(valid, 10, 1).tolist() == [1, 2, 3]
    long = np.ones(30, bool)
    long[:3] = False
    assert valid_window_starts(long, 5, 4).tolist() == [3, 7, 11, 15, 19, 23]
    assert valid_window_starts(np.zeros(12, bool), 10, 4).size == 0
    assert valid_window_starts(np.ones(4, bool), 5, 1).size == 0


@pytest.mark.parametrize("method,frames", [("syncnet", 5), ("c3", 11)])
def test_min_frames_is_the_shortest_scorable_input(cache, method, frames):
    """``min_frames`` (what the comparison table marks "n/a" below) matches what scores: a lip-flow
    model needs one frame more than its window, the first flow frame having no motion."""
    scorer = NeuralSyncMethod(build_model(method, "debug"), name=method)
    assert scorer.min_frames == frames
    ninp = _neural_input(cache["val"][0], 0)
    assert np.isfinite(scorer.score(ninp.window(0, frames), SHIFTS)).any()
    short = scorer.score(ninp.window(0, frames - 1), SHIFTS)
    assert not (np.isfinite(short) & (short != 0)).any()


class _PairwiseOnly(torch.nn.Module):
    """A pair model seen without its towers split: the scorer must fall back to one forward per
    (window, shift) pair."""

    output = "pair"

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.config, self.visual_kind = model, model.config, model.visual_kind

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        return self.inner(video, audio)


def test_pair_tower_caches_equal_pairwise_scoring(cache):
    """C3's tower features cached across windows and null rolls (one warm scorer) give the scores
    of running every pair through the whole model."""
    model = build_model("c3", "debug").eval()
    warm = NeuralSyncMethod(model, name="c3", stride=4)
    ninp = _neural_input(cache["val"][0], 3)
    derived_inputs = (ninp, ninp.window(10, 80), ninp.rolled(37), ninp.rolled(-5),
                      ninp.window(5, 60).rolled(9))
    for derived in derived_inputs:
        plain = NeuralSyncMethod(_PairwiseOnly(model), name="c3", stride=4).score(derived, SHIFTS)
        assert np.isfinite(plain).all() and np.ptp(plain) > 0
        np.testing.assert_allclose(warm.score(derived, SHIFTS), plain, atol=1e-5)
    assert any(k[0] == "v" for k in warm._out_cache) and any(k[0] == "a" for k in warm._out_cache)
