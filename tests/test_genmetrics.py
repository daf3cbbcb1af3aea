"""Generation-quality metrics: PSNR, SSIM, CPBD, LMD and the LSE-D / LSE-C pair."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from avsync.lipgen.metrics import cpbd, cpbd_video, lmd, psnr, ssim, sync_distance_confidence


def _pink_noise(n: int, rng: np.random.Generator, std: float) -> np.ndarray:
    """Isotropic 1/f^0.8 noise, a stand-in for natural-image texture."""
    f = np.fft.fftfreq(n)
    radius = np.hypot(*np.meshgrid(f, f))
    radius[0, 0] = 1.0
    spectrum = (rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n))) / radius**0.8
    spectrum[0, 0] = 0.0
    x = np.real(np.fft.ifft2(spectrum))
    return x / x.std() * std


def _scene(n: int, seed: int) -> np.ndarray:
    """Sharp (n, n) uint8 test image: random flat rectangles (steps up to +-20 levels) on textured grey."""
    rng = np.random.default_rng(seed)
    img = np.full((n, n), 128.0)
    for _ in range(n // 4):
        x0, y0 = rng.integers(0, n - 4, 2)
        w, h = rng.integers(3, n // 3, 2)
        img[y0 : y0 + h, x0 : x0 + w] = 128 + rng.uniform(-20, 20)
    img += _pink_noise(n, np.random.default_rng(seed + 1), 8.0)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    return img if sigma == 0 else cv2.GaussianBlur(img, (0, 0), sigma)


# ---- PSNR ----------------------------------------------------------------------------------


def test_psnr_identical_is_inf():
    a = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    assert psnr(a, a.copy()) == math.inf


def test_psnr_constant_error_closed_form():
    a = np.full((2, 8, 8, 3), 100, np.uint8)
    assert psnr(a + 10, a) == pytest.approx(20 * math.log10(255 / 10), abs=1e-9)
    assert psnr(a / 255.0, (a + 10) / 255.0, data_range=1.0) == pytest.approx(20 * math.log10(25.5))


def test_psnr_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shape"):
        psnr(np.zeros((8, 8, 3)), np.zeros((8, 9, 3)))


# ---- SSIM ----------------------------------------------------------------------------------


def test_ssim_identical_is_one_and_symmetric():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (32, 32, 3)).astype(np.uint8)
    b = np.clip(a + rng.normal(0, 15, a.shape), 0, 255).astype(np.uint8)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    assert ssim(a, b) == pytest.approx(ssim(b, a), abs=1e-12)
    assert ssim(a, b) < 0.99


def test_ssim_drops_monotonically_with_noise():
    clean = _scene(48, 3).astype(np.float64)
    rng = np.random.default_rng(4)
    unit = rng.normal(size=clean.shape)
    scores = [ssim(clean + s * unit, clean) for s in (1, 5, 10, 20, 40)]
    assert all(x > y for x, y in zip(scores[:-1], scores[1:], strict=True)), scores


def test_ssim_video_is_mean_of_frames():
    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, (3, 20, 24, 3)).astype(np.uint8)
    b = rng.integers(0, 256, (3, 20, 24, 3)).astype(np.uint8)
    assert ssim(a, b) == pytest.approx(np.mean([ssim(x, y) for x, y in zip(a, b, strict=True)]), abs=1e-12)


def test_ssim_matches_skimage():
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(6)
    a = rng.integers(0, 256, (40, 48, 3)).astype(np.uint8)
    b = np.clip(a + rng.normal(0, 20, a.shape), 0, 255).astype(np.uint8)
    ref = metrics.structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                        channel_axis=-1, data_range=255)
    assert ssim(a, b) == pytest.approx(ref, abs=1e-3)


def test_ssim_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shape"):
        ssim(np.zeros((16, 16)), np.zeros((16, 16, 3)))


# ---- CPBD ----------------------------------------------------------------------------------


def test_cpbd_decreases_with_blur_128():
    img = _scene(128, 0)
    scores = [cpbd(_blur(img, s)) for s in (0, 1, 2, 3)]
    assert scores[0] > 0.5 and scores[3] < 0.2, scores
    assert scores[0] > scores[1] > scores[2] > scores[3], scores


def test_cpbd_video_decreases_with_blur_64():
    """64x64 crops (one CPBD block each) are noisier per image; a six-frame clip is averaged."""
    video = np.stack([_scene(64, 10 + k) for k in range(6)])
    scores = [cpbd_video(np.stack([_blur(f, s) for f in video])) for s in (0, 1, 2, 3)]
    assert scores[0] > 0.5 and scores[3] < 0.2, scores
    assert scores[0] > scores[1] > scores[2] > scores[3], scores


def test_cpbd_rgb_equals_its_luma():
    grey = _scene(64, 2)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    assert cpbd(rgb) == pytest.approx(cpbd(grey))
    assert 0.0 < cpbd(grey) <= 1.0


def test_cpbd_flat_image_is_zero():
    assert cpbd(np.full((64, 64), 117, np.uint8)) == 0.0
    assert cpbd_video(np.zeros((2, 64, 64, 3), np.uint8)) == 0.0


def test_cpbd_sharp_step_edges_are_all_sharp():
    img = np.full((64, 64), 100, np.uint8)
    img[:, 20:40] = 140  # two ideal vertical steps: width 2 <= JNB width 5
    assert cpbd(img) == 1.0


def test_cpbd_rejects_bad_shape():
    with pytest.raises(ValueError, match="shape"):
        cpbd(np.zeros((2, 64, 64, 3)))


# ---- LMD -----------------------------------------------------------------------------------


def _landmarks(t: int = 4, p: int = 20, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 64, (t, p, 2))


def test_lmd_identical_is_zero():
    lm = _landmarks()
    assert lmd(lm, lm.copy()) == 0.0


@settings(max_examples=40, deadline=None)
@given(dx=st.floats(-500, 500), dy=st.floats(-500, 500), seed=st.integers(0, 1000))
def test_lmd_invariant_to_global_translation(dx, dy, seed):
    target = _landmarks(seed=seed)
    pred = target + np.random.default_rng(seed + 1).normal(0, 2, target.shape)
    assert lmd(pred + np.array([dx, dy]), target) == pytest.approx(lmd(pred, target), abs=1e-6)


def test_lmd_known_displacement_closed_form():
    target = _landmarks(t=3, p=10)
    pred = target.copy()
    pred[:, :5] += np.array([3.0, 4.0])  # half the points move by 5 px; the mean moves by (1.5, 2)
    # after centring, every point is 2.5 px from its target (moved ones +(1.5,2), the others -(1.5,2))
    assert lmd(pred, target) == pytest.approx(2.5, abs=1e-12)


def test_lmd_skips_nan_frames_and_rejects_all_nan():
    target = _landmarks(t=3, p=6)
    pred = target.copy()
    pred[1] += np.array([[3.0, 4.0]] * 3 + [[-3.0, -4.0]] * 3)  # frame 1: mean kept, LMD 5
    pred[0, 2, 0] = np.nan
    target[2, 0, 1] = np.nan
    assert lmd(pred, target) == pytest.approx(5.0)
    with pytest.raises(ValueError, match="NaN"):
        lmd(np.full((2, 3, 2), np.nan), np.zeros((2, 3, 2)))


def test_lmd_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shape"):
        lmd(np.zeros((4, 20, 2)), np.zeros((4, 19, 2)))
    with pytest.raises(ValueError, match=r"\(T, P, 2\)"):
        lmd(np.zeros((4, 20, 3)), np.zeros((4, 20, 3)))


# ---- LSE-D / LSE-C -------------------------------------------------------------------------


def test_sync_distance_confidence():
    curve = np.array([9.0, 8.5, 6.0, 8.0, 9.5])
    dist, conf = sync_distance_confidence(curve)
    assert dist == 6.0 and conf == pytest.approx(8.5 - 6.0)
    assert sync_distance_confidence([3.0, 1.0, 2.0, 4.0]) == (1.0, 1.0)  # lower middle value, as torch
    with pytest.raises(ValueError):
        sync_distance_confidence(np.zeros((3, 2)))
