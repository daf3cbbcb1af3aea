"""Known answers for the training-free methods on synthetic signals.

A smooth random "mouth opening" signal v (band-limited noise at 25 fps) drives a fake audio
feature a(u) = v(u - k0): the audio is LATE by k0 frames. ``audio_at(k)`` reads the audio at the
frame times + k frames, so the curves must peak at k = k0.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.signal import butter, sosfiltfilt

from avsync.models.classical import (
    bandpass,
    bandpass_axis,
    correlation_curve,
    derivative,
    pearson_columns,
    qmi_curve,
    quadratic_mutual_information,
)

FPS = 25.0
T = 200
MARGIN = 40
SHIFTS = np.arange(-15, 16)
SEEDS = [0, 1, 2, 3]
TRUE_SHIFTS = list(range(-7, 8))


def smooth_signal(n: int, seed: int) -> np.ndarray:
    """Band-limited (1-6 Hz) noise, unit variance: a stand-in for a mouth-opening trace."""
    white = np.random.default_rng(seed).standard_normal(n + 100)
    sos = butter(4, [1.0, 6.0], btype="band", fs=FPS, output="sos")
    x = sosfiltfilt(sos, white)[50:-50]
    return (x - x.mean()) / x.std()


def make_case(k0: int, seed: int, n_cols: int = 3, noise: float = 0.0):
    """(visual (T, 2), audio_at) with the audio late by k0 frames.

    The audio exists for audio frames 0..T-1 only; reads outside are NaN. Audio column 1 is the
    delayed signal; the other columns are unrelated noise.
    """
    rng = np.random.default_rng(1000 + seed)
    ext = smooth_signal(T + 2 * MARGIN, seed)  # ext[MARGIN + t] = v(t)
    v = ext[MARGIN: MARGIN + T]
    visual = np.column_stack([v + noise * rng.standard_normal(T), rng.standard_normal(T)])
    u = np.arange(T)
    audio = rng.standard_normal((T, n_cols))
    audio[:, 1] = ext[MARGIN + u - k0] + noise * rng.standard_normal(T)  # a(u) = v(u - k0)

    def audio_at(k: float) -> np.ndarray:
        idx = np.arange(T) + int(round(k))
        out = np.full((T, n_cols), np.nan)
        ok = (idx >= 0) & (idx < T)
        out[ok] = audio[idx[ok]]
        return out

    return visual, audio_at


def test_smooth_signal_is_smooth_and_random() -> None:
    a, b = smooth_signal(T, 0), smooth_signal(T, 1)
    assert a.shape == (T,)
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.5
    # band-limited: neighbouring frames are strongly correlated
    assert np.corrcoef(a[1:], a[:-1])[0, 1] > 0.5


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("k0", TRUE_SHIFTS)
def test_correlation_curve_recovers_shift(k0: int, seed: int) -> None:
    visual, audio_at = make_case(k0, seed)
    curve = correlation_curve(visual, audio_at, SHIFTS, FPS, pairs=[(0, 1)])
    assert curve.shape == (len(SHIFTS),)
    assert np.isfinite(curve).all()
    assert SHIFTS[int(np.argmax(curve))] == k0
    assert curve.max() > 0.9  # an exact copy correlates almost perfectly
    assert np.all(np.abs(curve) <= 1 + 1e-9)


@pytest.mark.parametrize("transforms", [("diff",), ("band",), ("diff", "band")])
@pytest.mark.parametrize("k0", [-7, -3, 0, 5, 7])
def test_correlation_curve_each_transform(k0: int, transforms: tuple[str, ...]) -> None:
    visual, audio_at = make_case(k0, seed=7, noise=0.3)
    curve = correlation_curve(visual, audio_at, SHIFTS, FPS, pairs=[(0, 1)],
                              transforms=transforms)
    assert SHIFTS[int(np.argmax(curve))] == k0


def test_correlation_curve_averages_pairs() -> None:
    """A useless pair (noise columns) dilutes the peak but the argmax stays put."""
    visual, audio_at = make_case(4, seed=3)
    good = correlation_curve(visual, audio_at, SHIFTS, FPS, pairs=[(0, 1)])
    mixed = correlation_curve(visual, audio_at, SHIFTS, FPS, pairs=[(0, 1), (1, 2)])
    assert SHIFTS[int(np.argmax(mixed))] == 4
    assert mixed.max() < good.max()


def test_correlation_curve_unrelated_audio_is_weak() -> None:
    visual, _ = make_case(0, seed=0)
    _, other = make_case(0, seed=99)
    curve = correlation_curve(visual, other, SHIFTS, FPS, pairs=[(0, 1)])
    assert np.abs(curve).max() < 0.6


def test_correlation_curve_rejects_unknown_transform() -> None:
    visual, audio_at = make_case(0, seed=0)
    with pytest.raises(ValueError):
        correlation_curve(visual, audio_at, SHIFTS, FPS, pairs=[(0, 1)], transforms=("fft",))


def test_correlation_curve_no_audio_at_all_is_zero() -> None:
    visual, _ = make_case(0, seed=0)
    curve = correlation_curve(visual, lambda k: np.full((T, 3), np.nan), SHIFTS, FPS,
                              pairs=[(0, 1)])
    np.testing.assert_array_equal(curve, 0.0)


@pytest.mark.parametrize("seed", SEEDS[:3])
@pytest.mark.parametrize("k0", [-7, -4, -1, 0, 2, 5, 7])
def test_qmi_curve_recovers_shift(k0: int, seed: int) -> None:
    visual, audio_at = make_case(k0, seed)
    curve = qmi_curve(visual, audio_at, SHIFTS, FPS, visual_col=0, audio_col=1)
    assert curve.shape == (len(SHIFTS),)
    assert np.isfinite(curve).all()
    assert abs(SHIFTS[int(np.argmax(curve))] - k0) <= 1


def test_qmi_curve_blocks() -> None:
    visual, audio_at = make_case(3, seed=5)
    curve = qmi_curve(visual, audio_at, SHIFTS, FPS, visual_col=0, audio_col=1, block_frames=60)
    assert abs(SHIFTS[int(np.argmax(curve))] - 3) <= 1


def test_qmi_curve_no_audio_is_zero() -> None:
    visual, _ = make_case(0, seed=0)
    curve = qmi_curve(visual, lambda k: np.full((T, 3), np.nan), SHIFTS, FPS, 0, 1)
    np.testing.assert_array_equal(curve, 0.0)


def test_qmi_dependent_beats_independent() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(300)
    dep = quadratic_mutual_information(x, x**3 + 0.1 * rng.standard_normal(300))
    ind = quadratic_mutual_information(x, rng.standard_normal(300))
    assert dep > 3 * ind
    assert ind >= -1e-12  # an L2 distance between densities
    assert quadratic_mutual_information(x[:3], x[:3]) == 0.0  # too short


# ----------------------------------------------------------------------------- pearson


@settings(max_examples=60, deadline=None)
@given(t=st.integers(5, 80), p=st.integers(1, 4), seed=st.integers(0, 1000),
       drop=st.floats(0, 0.5))
def test_pearson_columns_matches_corrcoef(t: int, p: int, seed: int, drop: float) -> None:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((t, p))
    b = 0.5 * a + rng.standard_normal((t, p))
    mask = rng.random(t) >= drop
    r = pearson_columns(a, b, mask)
    assert r.shape == (p,)
    for j in range(p):
        if mask.sum() >= 4:
            want = np.corrcoef(a[mask, j], b[mask, j])[0, 1]
            assert r[j] == pytest.approx(want, abs=1e-9)
        else:
            assert r[j] == 0.0


def test_pearson_columns_batched() -> None:
    rng = np.random.default_rng(1)
    a = rng.standard_normal((3, 50, 2))
    b = rng.standard_normal((3, 50, 2)) + a
    mask = rng.random((3, 50)) > 0.2
    r = pearson_columns(a, b, mask)
    assert r.shape == (3, 2)
    for i in range(3):
        for j in range(2):
            want = np.corrcoef(a[i, mask[i], j], b[i, mask[i], j])[0, 1]
            assert r[i, j] == pytest.approx(want, abs=1e-9)


def test_pearson_columns_few_rows_is_zero_and_sign() -> None:
    a = np.arange(10.0)[:, None]
    mask = np.zeros(10, bool)
    mask[:3] = True
    assert pearson_columns(a, a, mask)[0] == 0.0
    full = np.ones(10, bool)
    assert pearson_columns(a, a, full)[0] == pytest.approx(1.0)
    assert pearson_columns(a, -a, full)[0] == pytest.approx(-1.0)


# ----------------------------------------------------------------------------- filters


@pytest.mark.parametrize("dc", [0.0, 5.0, -300.0])
def test_bandpass_removes_dc(dc: float) -> None:
    t = np.arange(250) / FPS
    x = dc + np.sin(2 * np.pi * 3.0 * t)  # 3 Hz: inside the 1-8 Hz band
    y = bandpass(x, FPS)
    assert y.shape == x.shape
    assert abs(y[25:-25].mean()) < 0.05
    # the in-band sine survives
    assert np.std(y[25:-25]) == pytest.approx(np.std(x[25:-25]), rel=0.2)
    const = bandpass(np.full(250, dc), FPS)
    assert np.abs(const).max() < 1e-6 + 1e-9 * abs(dc)


def test_bandpass_removes_slow_drift_and_fast_flicker() -> None:
    t = np.arange(500) / FPS
    slow = np.sin(2 * np.pi * 0.1 * t)
    fast = np.sin(2 * np.pi * 12.0 * t)  # above 0.45 * fps = 11.25 Hz
    assert np.std(bandpass(slow, FPS)[50:-50]) < 0.1
    assert np.std(bandpass(fast, FPS)[50:-50]) < 0.1


def test_bandpass_short_input_is_demeaned() -> None:
    x = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]])
    np.testing.assert_allclose(bandpass(x, FPS), x - x.mean(axis=0))


def test_bandpass_axis_matches_per_row() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 100, 2))
    y = bandpass_axis(x, FPS, axis=1)
    for i in range(4):
        np.testing.assert_allclose(y[i], bandpass(x[i], FPS), atol=1e-10)


def test_derivative() -> None:
    x = np.array([[0.0], [1.0], [3.0], [6.0]])
    np.testing.assert_array_equal(derivative(x), [[1.0], [1.0], [2.0], [3.0]])
    assert derivative(np.zeros((1, 2))).shape == (1, 2)
