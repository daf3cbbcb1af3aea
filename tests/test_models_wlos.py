"""Vertical flow features and the WLOS / C3 models (Kikuchi & Ozasa)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from avsync.face.flow import FLOW_CLIP, FLOW_SCALE, flow_valid, normalise_flow, reuse_flow, vertical_flow
from avsync.models.syncnet import count_parameters
from avsync.models.wlos import C3, WLOS, WLOSConfig, dct_matrix

# ----------------------------------------------------------------------------- flow


def _texture(seed: int = 0, side: int = 200) -> np.ndarray:
    """A smooth random grey texture (float32, 0..255)."""
    rng = np.random.default_rng(seed)
    tex = cv2.GaussianBlur(rng.uniform(0, 255, (side, side)).astype(np.float32), (0, 0), 3)
    return cv2.normalize(tex, None, 0, 255, cv2.NORM_MINMAX)


def _moving(step_px: int, frames: int = 8) -> np.ndarray:
    """(frames, 48, 48) uint8 crops of the texture whose content moves down by step_px per frame."""
    tex = _texture()
    top = 80
    return np.stack([tex[top - step_px * t: top - step_px * t + 48, 60:108] for t in range(frames)]
                    ).astype(np.uint8)


@pytest.mark.parametrize("step_px", [1, 2, -1, -2])
def test_vertical_flow_direction_and_magnitude(step_px: int) -> None:
    flow = vertical_flow(_moving(step_px))
    assert flow.shape == (8, 32, 32) and flow.dtype == np.float32
    assert np.all(flow[0] == 0)
    expected = step_px * 32 / 48  # pixels of the 32x32 image
    centre = flow[1:, 8:24, 8:24].mean()  # away from the border
    assert np.sign(centre) == np.sign(step_px)
    assert abs(centre - expected) < 0.25 * abs(expected), (centre, expected)
    assert abs(flow[1:].mean() - expected) < 0.35 * abs(expected)


def test_vertical_flow_static_and_sizes() -> None:
    static = np.repeat(_moving(0)[:1], 5, axis=0)
    flow = vertical_flow(static)
    assert np.abs(flow).max() < 1e-3
    assert vertical_flow(_moving(1), size=24).shape == (8, 24, 24)
    assert vertical_flow(_moving(1)[:1]).shape == (1, 32, 32)
    assert not vertical_flow(_moving(1)[:1]).any()
    with pytest.raises(ValueError):
        vertical_flow(np.zeros((4, 48), np.uint8))


def test_flow_valid() -> None:
    valid = np.array([1, 1, 0, 1, 1, 1, 0], bool)
    np.testing.assert_array_equal(flow_valid(valid), [0, 1, 0, 0, 1, 1, 0])
    assert not flow_valid(np.ones(1, bool)).any()
    assert flow_valid(np.ones(0, bool)).shape == (0,)


def test_normalise_flow() -> None:
    flow = np.array([0.0, FLOW_SCALE, -2 * FLOW_SCALE, 100.0, -100.0, np.nan], np.float64)
    out = normalise_flow(flow)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0, 1, -2, FLOW_CLIP, -FLOW_CLIP, 0])


def test_reuse_flow_equals_fresh_flow_of_windows_and_rolls() -> None:
    """The scorer computes a track's flow once; a window or a null roll of it reuses it and only
    recomputes the roll's seam: the result must be what Farneback gives on those crops."""
    rng = np.random.default_rng(0)
    base = cv2.resize(rng.integers(0, 255, (12, 12)).astype(np.uint8), (48, 48))
    mouth = np.stack([np.roll(base, int(3 * np.sin(t / 2)), axis=0) for t in range(30)])
    root = normalise_flow(vertical_flow(mouth))
    assert np.abs(root).max() > 0.1  # there is motion to get wrong
    ids = np.arange(30)
    for sub in (ids[5:17], np.roll(ids, 11), np.roll(ids[3:20], -4), ids[:1]):
        np.testing.assert_array_equal(reuse_flow(root, sub, mouth[sub]),
                                      normalise_flow(vertical_flow(mouth[sub])))


# ----------------------------------------------------------------------------- models

PRESETS = ["debug", "small"]
# Parameter counts at the time of writing: debug C3 15,705 / WLOS 15,977; small C3 179,233 /
# WLOS 183,393.
MAX_PARAMS = {"debug": 20_000, "small": 600_000}


def _inputs(batch: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 10, 32, 32, generator=g), torch.randn(batch, 40, 40, generator=g)


def test_dct_orthonormal_and_fixed() -> None:
    d = dct_matrix(40).double()
    torch.testing.assert_close(d @ d.T, torch.eye(40, dtype=torch.float64), atol=1e-6, rtol=0)
    # Row 0 is the flat band average (dropped); row 1 is the first cosine.
    torch.testing.assert_close(d[0], torch.full((40,), 40**-0.5, dtype=torch.float64))
    model = WLOS(WLOSConfig.debug())
    buf = model.audio.dct
    assert buf.shape == (12, 40)
    torch.testing.assert_close(buf, dct_matrix(40)[1:13])
    assert not buf.requires_grad
    assert all(p.data_ptr() != buf.data_ptr() for p in model.parameters())
    assert "audio.dct" in dict(model.named_buffers())
    # MFCC of a flat (loudness-only) spectrum is zero: c0 is dropped.
    flat = torch.ones(2, 40, 40) * 3.0
    assert model.audio.mfcc(flat).abs().max() < 1e-4


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("cls", [C3, WLOS])
def test_shapes_and_size(cls: type[nn.Module], preset: str) -> None:
    torch.manual_seed(0)
    model = cls(WLOSConfig.preset(preset))
    assert model.visual_kind == "flow"
    assert model.output == ("pair" if cls is C3 else "regression")
    n = count_parameters(model)
    print(f"{cls.__name__} {preset}: {n} parameters")
    assert n < MAX_PARAMS[preset]
    video, audio = _inputs()
    assert model(video, audio).shape == (3,)
    with pytest.raises(ValueError):
        model(video[:, :9], audio)
    with pytest.raises(ValueError):
        model(video, audio[:, :, :20])


@pytest.mark.parametrize("cls", [C3, WLOS])
def test_gradients_reach_every_parameter(cls: type[nn.Module]) -> None:
    torch.manual_seed(0)
    model = cls(WLOSConfig.small()).train()
    video, audio = _inputs()
    model(video, audio).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    nonzero = [name for name, p in model.named_parameters() if p.grad.abs().sum() > 0]
    assert len(nonzero) == len(list(model.parameters()))


@pytest.mark.parametrize("cls", [C3, WLOS])
def test_eval_deterministic(cls: type[nn.Module]) -> None:
    torch.manual_seed(0)
    model = cls(WLOSConfig.small()).eval()
    video, audio = _inputs()
    with torch.no_grad():
        a, b = model(video, audio), model(video, audio)
        single = model(video[:1], audio[:1])
    assert torch.equal(a, b)
    torch.testing.assert_close(single, a[:1])  # no batch dependence in eval mode


def test_predict_clamps() -> None:
    torch.manual_seed(0)
    model = WLOS(WLOSConfig.debug()).eval()
    with torch.no_grad():
        model.fusion[-1].bias.fill_(50.0)
        video, audio = _inputs()
        assert torch.all(model(video, audio) > 9)
        assert torch.all(model.predict(video, audio) == 9.0)
        model.fusion[-1].bias.fill_(-50.0)
        assert torch.all(model.predict(video, audio) == -9.0)


def test_init_from_c3() -> None:
    torch.manual_seed(0)
    c3 = C3(WLOSConfig.debug())
    with torch.no_grad():  # make the C3 towers distinct from any fresh init, BN stats included
        for p in c3.parameters():
            p.add_(0.5)
        c3.video.convs[5].running_mean.fill_(0.3)
    torch.manual_seed(1)
    wlos = WLOS(WLOSConfig.debug())
    fusion_before = {k: v.clone() for k, v in wlos.fusion.state_dict().items()}
    wlos.init_from_c3(c3)
    for tower in ("video", "audio"):
        mine, theirs = getattr(wlos, tower).state_dict(), getattr(c3, tower).state_dict()
        assert mine.keys() == theirs.keys()
        for k in mine:
            assert torch.equal(mine[k], theirs[k]), (tower, k)
            assert mine[k].data_ptr() != theirs[k].data_ptr()  # copied, not shared
    for k, v in wlos.fusion.state_dict().items():
        assert torch.equal(v, fusion_before[k]), k
    assert not torch.equal(wlos.fusion[0].weight, c3.fusion[0].weight)
    with pytest.raises(ValueError):
        WLOS(WLOSConfig.small()).init_from_c3(c3)


# ----------------------------------------------------------------------------- learning


def _synthetic(n: int, shifts: torch.Tensor, g: torch.Generator
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pairs whose audio envelope is the mean flow shifted by d frames (audio late by d > 0).

    A speech "event" is a Gaussian bump (1 frame wide) in a 16-frame envelope s; the video window
    sees s[3:13] as uniform vertical flow, the audio window s[3 - d:13 - d] as a non-flat
    spectral profile (a flat one would vanish with the dropped c0). Both windows contain the
    bump for |d| <= 3.
    """
    d = shifts[torch.randint(len(shifts), (n,), generator=g)]
    peak = 6 + 3 * torch.rand(n, generator=g)
    s = torch.exp(-0.5 * (torch.arange(16.0)[None] - peak[:, None]) ** 2)  # (n, 16)
    t = torch.arange(10)
    s_video = s[:, t + 3]
    s_audio = s.gather(1, t[None] + 3 - d[:, None])
    video = s_video[:, :, None, None].expand(n, 10, 32, 32) + 0.1 * torch.randn(n, 10, 32, 32, generator=g)
    profile = torch.linspace(1.0, -1.0, 40)
    audio = (s_audio.repeat_interleave(4, dim=1)[:, :, None] * profile
             + 0.1 * torch.randn(n, 40, 40, generator=g))
    return video, audio, d


def test_wlos_learns_offsets(one_thread) -> None:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    shifts = torch.arange(-3, 4)
    model = WLOS(WLOSConfig.debug())
    v_eval, a_eval, d_eval = _synthetic(256, shifts, g)
    d_eval = d_eval.float()

    def eval_mse() -> float:
        model.eval()
        with torch.no_grad():
            mse = float(((model(v_eval, a_eval) - d_eval) ** 2).mean())
        model.train()
        return mse

    initial = eval_mse()
    assert initial > 0.8 * float(d_eval.var())  # an untrained model does not know d
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(80):
        video, audio, d = _synthetic(16, shifts, g)
        loss = ((model(video, audio) - d.float()) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    final = eval_mse()
    assert final < 0.25 * initial, (initial, final)
    # Sign: audio late (d > 0) predicts > 0.
    model.eval()
    with torch.no_grad():
        pred = model.predict(v_eval, a_eval)
    assert pred[d_eval >= 2].mean() > 1.0 and pred[d_eval <= -2].mean() < -1.0


def test_c3_learns_sync(one_thread) -> None:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    shifted = torch.tensor([-3, -2, -1, 1, 2, 3])

    def batch(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        sync = torch.rand(n, generator=g) < 0.5
        video, audio, d = _synthetic(n, shifted, g)
        v0, a0, _ = _synthetic(n, torch.tensor([0]), g)
        video = torch.where(sync[:, None, None, None], v0, video)
        audio = torch.where(sync[:, None, None], a0, audio)
        return video, audio, sync.float()

    model = C3(WLOSConfig.debug())
    v_eval, a_eval, y_eval = batch(256)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = nn.BCEWithLogitsLoss()
    for _ in range(80):
        video, audio, y = batch(16)
        loss = loss_fn(model(video, audio), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        acc = float(((model(v_eval, a_eval) > 0).float() == y_eval).float().mean())
    assert acc > 0.75, acc


@pytest.mark.parametrize("family", ["c3", "vocalist"])
def test_pair_candidates_forward_equals_pairwise(family) -> None:
    """The shared-candidates forward (towers once per window, fusion per pair) gives the same
    logits as pairing each video window with each candidate audio window explicitly."""
    from avsync.models.vocalist import VocaLiST, VocaLiSTConfig

    torch.manual_seed(0)
    if family == "c3":
        model = C3(WLOSConfig.debug())
        video, audio = torch.randn(3, 10, 32, 32), torch.randn(7, 40, 40)
    else:
        model = VocaLiST(VocaLiSTConfig.debug())
        video, audio = torch.randn(3, 5, 48, 48), torch.randn(7, 20, 40)
    model.eval()
    idx = torch.randint(0, 7, (3, 4))
    with torch.no_grad():
        shared = model(video, audio, candidates=idx)
        pairwise = model(video.repeat_interleave(4, 0), audio[idx.reshape(-1)]).view(3, 4)
    assert shared.shape == (3, 4)
    assert torch.allclose(shared, pairwise, atol=1e-5)
    assert model.similarity is not None  # the default head has the similarity skip
    with pytest.raises(ValueError):
        model(video, audio)  # 3 windows, 7 audio windows, no candidates: not pairs
