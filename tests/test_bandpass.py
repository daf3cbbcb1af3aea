"""models.bandpass: SciPy's Butterworth band-pass design and sosfiltfilt, without scipy.signal."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import butter
from scipy.signal import sosfiltfilt as scipy_sosfiltfilt

from avsync.models.bandpass import BLOCK, butter_bandpass_sos, sosfiltfilt


@pytest.mark.parametrize("order", [2, 4])
@pytest.mark.parametrize(("fs", "low", "high"), [(25, 1, 8), (30, 1, 8), (12.5, 1, 5.625),
                                                 (50, 1, 8), (100, 2, 20)])
def test_design_matches_scipy(order: int, fs: float, low: float, high: float) -> None:
    ours = butter_bandpass_sos(order, low, high, fs)
    ref = butter(order, [low, high], btype="band", fs=fs, output="sos")
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)


def test_design_rejects_a_band_outside_nyquist() -> None:
    with pytest.raises(ValueError, match="band"):
        butter_bandpass_sos(2, 1.0, 13.0, 25.0)


@pytest.mark.parametrize(("shape", "axis"), [((50, 7), 0), ((31, 50, 7), 1), ((1499, 7), 0),
                                             ((16, 3), 0), ((200,), 0), ((3, 2 * BLOCK + 1), 1),
                                             ((BLOCK - 15,), 0)])
def test_filter_matches_scipy(shape: tuple, axis: int) -> None:
    rng = np.random.default_rng(len(shape) * 100 + shape[axis])
    x = rng.standard_normal(shape).cumsum(axis=axis) * 3 + 5  # a drift and an offset to remove
    sos = butter(2, [1, 8], btype="band", fs=25, output="sos")
    padlen = min(x.shape[axis] - 1, 15)
    ours = sosfiltfilt(sos, x, axis=axis, padlen=padlen)
    ref = scipy_sosfiltfilt(sos, x, axis=axis, padlen=padlen)
    assert ours.shape == ref.shape and ours.dtype == ref.dtype == np.float64
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-11 * np.abs(ref).max())


def test_default_padlen_and_float32_input_match_scipy() -> None:
    x = np.random.default_rng(1).standard_normal((300, 2)).astype(np.float32)
    sos = butter(2, [1, 8], btype="band", fs=25, output="sos")
    np.testing.assert_allclose(sosfiltfilt(sos, x, axis=0), scipy_sosfiltfilt(sos, x, axis=0),
                               rtol=0, atol=1e-12)


def test_too_short_input_is_refused() -> None:
    sos = butter_bandpass_sos(2, 1, 8, 25)
    with pytest.raises(ValueError, match="padlen"):
        sosfiltfilt(sos, np.ones(10), padlen=15)

