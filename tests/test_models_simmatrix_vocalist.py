"""SimMatrixSync (similarity-matrix offset classifier) and VocaLiST (cross-modal transformer)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from avsync.models.simmatrix import SimMatrixConfig, SimMatrixSync, diagonal_mean
from avsync.models.syncnet import count_parameters
from avsync.models.vocalist import VocaLiST, VocaLiSTConfig

PRESETS = ["debug", "small"]


def _sim_inputs(cfg: SimMatrixConfig, b: int = 3, frames: int | None = None):
    f = frames or cfg.frames
    return torch.randn(b, f, 48, 48), torch.randn(b, 4 * (f + 2 * cfg.max_shift), cfg.n_mels)


def _voc_inputs(cfg: VocaLiSTConfig, b: int = 3):
    return torch.randn(b, cfg.frames, 48, 48), torch.randn(b, cfg.audio_rows, cfg.n_mels)


# ---------------------------------------------------------------- contract, sizes, gradients


@pytest.mark.parametrize("preset", PRESETS)
def test_simmatrix_shapes_and_params(preset):
    torch.manual_seed(0)
    cfg = SimMatrixConfig.preset(preset)
    model = SimMatrixSync(cfg)
    assert model.config is cfg and model.visual_kind == "mouth" and model.output == "offsets"
    assert cfg.audio_rows == 4 * cfg.frames and cfg.n_mels == 40
    out = model(*_sim_inputs(cfg))
    assert out.shape == (3, 2 * cfg.max_shift + 1) and torch.isfinite(out).all()
    assert model.shifts.tolist() == list(range(-cfg.max_shift, cfg.max_shift + 1))
    n = count_parameters(model)
    assert n < 25_000 if preset == "debug" else 100_000 < n < 800_000


@pytest.mark.parametrize("preset", PRESETS)
def test_vocalist_shapes_and_params(preset):
    torch.manual_seed(0)
    cfg = VocaLiSTConfig.preset(preset)
    model = VocaLiST(cfg)
    assert model.config is cfg and model.visual_kind == "mouth" and model.output == "pair"
    assert (cfg.frames, cfg.audio_rows, cfg.n_mels) == (5, 20, 40)
    out = model(*_voc_inputs(cfg))
    assert out.shape == (3,) and torch.isfinite(out).all()
    n = count_parameters(model)
    assert n < 25_000 if preset == "debug" else 100_000 < n < 800_000


def test_simmatrix_other_frame_counts():
    cfg = dataclasses.replace(SimMatrixConfig.debug(), frames=9, audio_rows=36)
    model = SimMatrixSync(cfg)
    assert model(*_sim_inputs(cfg, b=2)).shape == (2, 31)
    # no layer depends on F: a 5-frame model also runs on 9 frames with a matching span
    assert SimMatrixSync(SimMatrixConfig.debug())(*_sim_inputs(cfg, b=2, frames=9)).shape == (2, 31)
    with pytest.raises(ValueError):
        dataclasses.replace(cfg, frames=5)  # audio_rows 36 != 4 * 5
    with pytest.raises(ValueError):
        model(torch.randn(2, 9, 48, 48), torch.randn(2, 36, 40))  # span without the 8S margin


def test_vocalist_rejects_bad_shapes():
    model = VocaLiST(VocaLiSTConfig.debug())
    with pytest.raises(ValueError):
        model(torch.randn(2, 5, 48, 48), torch.randn(2, 24, 40))
    with pytest.raises(ValueError):
        VocaLiSTConfig(audio_stride=3)


@pytest.mark.parametrize("preset", PRESETS + ["paper-like"])
@pytest.mark.parametrize("family", ["simmatrix", "vocalist"])
def test_gradients_reach_every_parameter(family, preset):
    torch.manual_seed(1)
    if family == "simmatrix":
        cfg = SimMatrixConfig.preset(preset if preset in PRESETS else "debug")
        model, inputs = SimMatrixSync(cfg), _sim_inputs(cfg)
    else:
        cfg = VocaLiSTConfig.preset(preset if preset in PRESETS else "debug")
        if preset == "paper-like":
            cfg = dataclasses.replace(cfg, time_bias=False, audio_stride=1, norm="group")
        model, inputs = VocaLiST(cfg), _voc_inputs(cfg)
    model.train()
    model(*inputs).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    # the gradient is not trivially zero everywhere
    assert sum(float(p.grad.abs().sum()) for p in model.parameters()) > 0


@pytest.mark.parametrize("family", ["simmatrix", "vocalist"])
def test_eval_is_deterministic(family):
    torch.manual_seed(2)
    if family == "simmatrix":
        cfg = SimMatrixConfig.small()
        model, inputs = SimMatrixSync(cfg), _sim_inputs(cfg)
    else:
        cfg = VocaLiSTConfig.small()
        model, inputs = VocaLiST(cfg), _voc_inputs(cfg)
    model.eval()
    with torch.no_grad():
        a, b = model(*inputs), model(*inputs)
        singles = torch.cat([model(*(x[i:i + 1] for x in inputs)) for i in range(3)])
    assert torch.equal(a, b)
    torch.testing.assert_close(singles, a, rtol=1e-4, atol=1e-5)  # no batch coupling in eval
    model.train()  # dropout (0.1 in small) makes training passes differ
    with torch.no_grad():
        assert not torch.equal(model(*inputs), model(*inputs))


# ---------------------------------------------------------------- diagonal_mean


def _diagonal_mean_naive(m: torch.Tensor) -> torch.Tensor:
    b, c, f, w = m.shape
    out = torch.zeros(b, c, w - f + 1)
    for bi in range(b):
        for ci in range(c):
            for k in range(w - f + 1):
                out[bi, ci, k] = sum(m[bi, ci, i, i + k] for i in range(f)) / f
    return out


@pytest.mark.parametrize("shape", [(2, 3, 5, 11), (1, 1, 4, 4), (3, 2, 9, 15)])
def test_diagonal_mean_matches_loop(shape):
    torch.manual_seed(3)
    m = torch.randn(*shape)
    torch.testing.assert_close(diagonal_mean(m), _diagonal_mean_naive(m))


def test_diagonal_mean_picks_the_shift_diagonal():
    # a matrix that is 1 exactly on the diagonal of shift k (j = i + k + S) peaks at index k + S
    f, s = 5, 3
    for k in range(-s, s + 1):
        m = torch.zeros(1, 1, f, f + 2 * s)
        m[0, 0, torch.arange(f), torch.arange(f) + k + s] = 1.0
        d = diagonal_mean(m)[0, 0]
        assert int(d.argmax()) == k + s and float(d.max()) == 1.0 and float(d.sum()) == 1.0
    with pytest.raises(ValueError):
        diagonal_mean(torch.zeros(1, 1, 5, 4))


# ---------------------------------------------------------------- learning on synthetic data


def _blob() -> torch.Tensor:
    y, x = torch.meshgrid(torch.arange(48.0), torch.arange(48.0), indexing="ij")
    return torch.exp(-((x - 24) ** 2 + (y - 30) ** 2) / (2 * 8.0**2))


def _synthetic(gen: torch.Generator, b: int, frames: int, max_shift: int, shifts: torch.Tensor,
               noise: float = 0.3):
    """A loudness envelope drives both modalities; the audio is late by ``shifts`` (B,) frames.

    Envelope e (B, F + 2S) per frame step; video frame i = e[i + S + k] * blob + noise (the mouth
    "opens" with the loudness); the span's 4 log-mel rows of step j = e[j] on every band + noise.
    So candidate k (span rows 4(k+S) .. 4(k+S) + 4F) holds the matching audio.
    Returns video (B, F, 48, 48), span (B, 4(F + 2S), 40).
    """
    steps = frames + 2 * max_shift
    e = torch.randn(b, steps, generator=gen)
    idx = torch.arange(frames)[None, :] + max_shift + shifts[:, None]  # (B, F)
    v_env = torch.gather(e, 1, idx)
    video = v_env[:, :, None, None] * 2 * _blob() + noise * torch.randn(b, frames, 48, 48, generator=gen)
    span = e.repeat_interleave(4, dim=1)[:, :, None].expand(b, 4 * steps, 40)
    span = span + noise * torch.randn(b, 4 * steps, 40, generator=gen)
    return video, span


def test_simmatrix_learns_synthetic_offsets(one_thread):
    torch.manual_seed(4)
    gen = torch.Generator().manual_seed(4)
    cfg = dataclasses.replace(SimMatrixConfig.debug(), max_shift=3)  # 7 classes: a quick test
    s, f = cfg.max_shift, cfg.frames
    model = SimMatrixSync(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(60):
        k = torch.randint(-s, s + 1, (16,), generator=gen)
        video, span = _synthetic(gen, 16, f, s, k)
        loss = F.cross_entropy(model(video, span), k + s)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    k = torch.randint(-s, s + 1, (128,), generator=gen)
    video, span = _synthetic(gen, 128, f, s, k)  # fresh data from the same generator
    with torch.no_grad():
        acc = float((model(video, span).argmax(1) == k + s).float().mean())
    chance = 1 / (2 * s + 1)
    assert acc > 0.6 > 4 * chance, acc  # ~1.0 in practice (chance 0.14)


def test_vocalist_learns_synthetic_sync(one_thread):
    torch.manual_seed(5)
    gen = torch.Generator().manual_seed(5)
    cfg = VocaLiSTConfig.debug()
    f, s = cfg.frames, 3
    model = VocaLiST(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def batch(b: int):
        sync = torch.rand(b, generator=gen) < 0.5
        sign = torch.randint(0, 2, (b,), generator=gen) * 2 - 1
        off = torch.randint(2, s + 1, (b,), generator=gen) * sign
        k = torch.where(sync, torch.zeros_like(off), off)
        video, span = _synthetic(gen, b, f, s, k)
        audio = span[:, 4 * s: 4 * s + 4 * f]  # candidate k = 0: the pair is in sync iff k == 0
        return video, audio, sync.float()

    model.train()
    for _ in range(150):
        video, audio, y = batch(16)
        loss = F.binary_cross_entropy_with_logits(model(video, audio), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    video, audio, y = batch(128)  # fresh pairs
    with torch.no_grad():
        acc = float(((model(video, audio) > 0).float() == y).float().mean())
    assert acc > 0.75, acc
