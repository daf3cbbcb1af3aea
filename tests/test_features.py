"""Audio features: shapes, names, the 10 ms grid, interpolation with ``.at()``, band energies."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from avsync.features import (
    AUDIO_NAMES,
    BANDS_HZ,
    N_MELS,
    N_MFCC,
    AudioFeatures,
    audio_features,
    dct_matrix,
    log_mel,
    mel_filterbank,
)
from avsync.timing import AUDIO_HOP_S, AUDIO_HOP_SAMPLES, AUDIO_WIN_SAMPLES, SAMPLE_RATE_HZ

SR = SAMPLE_RATE_HZ


def _tone(freq_hz: float, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def _noise(n: int, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def test_audio_names() -> None:
    assert AUDIO_NAMES[:3] == ("log_energy", "speech_energy", "flux")
    for name in ("band_80_300", "band_300_1000", "band_1000_3000", "band_3000_8000"):
        assert name in AUDIO_NAMES
    assert [n for n in AUDIO_NAMES if n.startswith("mfcc")] == [f"mfcc{i}" for i in range(N_MFCC)]
    assert len(AUDIO_NAMES) == 3 + len(BANDS_HZ) + N_MFCC
    assert len(set(AUDIO_NAMES)) == len(AUDIO_NAMES)


@pytest.mark.parametrize("n_samples", [16_000, 16_000 + 77, 800, 1])
@pytest.mark.parametrize("start_s", [0.0, 0.04, 12.5])
def test_audio_features_shapes_and_grid(n_samples: int, start_s: float) -> None:
    f = audio_features(_noise(n_samples), start_s)
    n_hops = 1 + max(n_samples, 2) // AUDIO_HOP_SAMPLES  # centred frames
    assert f.values.shape == (n_hops, len(AUDIO_NAMES))
    assert f.values.dtype == np.float32
    assert f.times_s.shape == (n_hops,)
    assert f.names == AUDIO_NAMES
    assert f.start_s == pytest.approx(start_s)
    assert f.times_s[0] == pytest.approx(start_s)
    if n_hops > 1:
        np.testing.assert_allclose(np.diff(f.times_s), AUDIO_HOP_S, rtol=0, atol=1e-9)
        assert f.end_s == pytest.approx(start_s + (n_hops - 1) * AUDIO_HOP_S)
    assert np.isfinite(f.values).all()


def test_audio_features_rejects_other_rates() -> None:
    with pytest.raises(ValueError):
        audio_features(_noise(1000), 0.0, sample_rate_hz=44_100)


def test_column_returns_named_column() -> None:
    f = audio_features(_noise(8000))
    for j, name in enumerate(AUDIO_NAMES):
        np.testing.assert_array_equal(f.column(name), f.values[:, j])


def test_tone_energy_lands_in_its_band() -> None:
    f = audio_features(_tone(1000.0))
    mid = slice(5, -5)  # away from the zero-padded edges
    hi = f.column("band_1000_3000")[mid]
    lo = f.column("band_80_300")[mid]
    assert (hi > lo + 5).all()  # log energies: many orders of magnitude apart
    assert (f.column("band_1000_3000")[mid] > f.column("band_3000_8000")[mid]).all()
    # 1 kHz is inside the 300-3000 Hz "speech" band: nearly all the energy is there
    np.testing.assert_allclose(f.column("speech_energy")[mid], f.column("log_energy")[mid], atol=0.05)


def test_low_tone_energy_lands_in_low_band() -> None:
    f = audio_features(_tone(150.0))
    mid = slice(5, -5)
    assert (f.column("band_80_300")[mid] > f.column("band_1000_3000")[mid] + 5).all()


def test_louder_is_more_energy() -> None:
    quiet = audio_features(_tone(1000.0, amp=0.05)).column("log_energy")[5:-5]
    loud = audio_features(_tone(1000.0, amp=0.5)).column("log_energy")[5:-5]
    np.testing.assert_allclose(loud - quiet, np.log(100.0), atol=0.01)  # power ratio 10^2


def test_energy_follows_a_burst_in_time() -> None:
    x = np.zeros(SR, np.float32)
    x[8000:9600] = _tone(1000.0, seconds=0.1)  # 0.5 .. 0.6 s
    f = audio_features(x, start_s=2.0)
    e = f.column("band_1000_3000")
    t_peak = f.times_s[e > e.max() - 1.0]
    assert t_peak.min() >= 2.5 - 0.03 and t_peak.max() <= 2.6 + 0.03


# ----------------------------------------------------------------------------- .at()


def _features(n: int, start_s: float, n_cols: int = 3, seed: int = 0) -> AudioFeatures:
    times = start_s + np.arange(n) * AUDIO_HOP_S
    vals = np.random.default_rng(seed).standard_normal((n, n_cols)).astype(np.float32)
    return AudioFeatures(times, vals, names=tuple(f"c{i}" for i in range(n_cols)))


@settings(deadline=None, max_examples=60)
@given(n=st.integers(3, 400), start=st.floats(-5, 50, allow_nan=False), seed=st.integers(0, 10))
def test_at_is_exact_on_interior_grid_points(n: int, start: float, seed: int) -> None:
    f = _features(n, start, seed=seed)
    out = f.at(f.times_s[:-1])
    assert out.shape == (n - 1, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, f.values[:-1], rtol=1e-5, atol=1e-5)


def test_at_is_exact_on_the_last_grid_point_simple() -> None:
    f = _features(101, 0.0)
    np.testing.assert_allclose(f.at(f.times_s), f.values, rtol=1e-5, atol=1e-5)


def test_at_is_exact_on_the_last_grid_point_after_offset_start() -> None:
    f = audio_features(_noise(787 * AUDIO_HOP_SAMPLES), start_s=40.31)
    assert len(f.times_s) == 788
    out = f.at(f.times_s)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, f.values, rtol=1e-5, atol=1e-5)


@settings(deadline=None, max_examples=60)
@given(n=st.integers(3, 300), start=st.floats(-5, 50, allow_nan=False),
       i=st.integers(0, 10_000), w=st.floats(0, 1))
def test_at_interpolates_linearly_between_grid_points(n: int, start: float, i: int, w: float) -> None:
    f = _features(n, start)
    i = i % (n - 1)
    t = f.times_s[i] + w * (f.times_s[i + 1] - f.times_s[i])
    want = (1 - w) * f.values[i] + w * f.values[i + 1]
    np.testing.assert_allclose(f.at(np.array([t]))[0], want, rtol=1e-4, atol=1e-4)


@settings(deadline=None, max_examples=60)
@given(n=st.integers(2, 300), start=st.floats(-5, 50, allow_nan=False), gap=st.floats(1e-3, 100))
def test_at_is_nan_outside(n: int, start: float, gap: float) -> None:
    f = _features(n, start)
    out = f.at(np.array([f.times_s[0] - gap, f.times_s[-1] + gap]))
    assert np.isnan(out).all()


def test_at_columns_subset_and_shift() -> None:
    f = _features(50, 1.0, n_cols=4)
    out = f.at(f.times_s[:10] + 0.005, columns=[2, 0])
    assert out.shape == (10, 2)
    want = 0.5 * (f.values[:10] + f.values[1:11])[:, [2, 0]]
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


def test_at_mixed_inside_and_outside() -> None:
    f = _features(20, 0.0)
    out = f.at(np.array([-0.001, 0.0, 0.095, 0.19, 0.2]))
    assert np.isnan(out[0]).all() and np.isnan(out[-1]).all()
    assert np.isfinite(out[1:4]).all()


# ----------------------------------------------------------------------------- filterbanks


@pytest.mark.parametrize("n_mels,n_fft", [(N_MELS, AUDIO_WIN_SAMPLES), (80, 1024), (10, 256)])
def test_mel_filterbank_shape_and_values(n_mels: int, n_fft: int) -> None:
    fb = mel_filterbank(n_mels, n_fft, SR)
    assert fb.shape == (n_mels, n_fft // 2 + 1)
    assert (fb >= 0).all()
    assert (fb <= 1 + 1e-6).all()  # triangles peak at 1
    assert (fb.sum(axis=1) > 0).all()  # no empty filter
    # centres increase with the filter index
    centres = np.argmax(fb, axis=1)
    assert (np.diff(centres) >= 0).all()


def test_mel_filterbank_respects_fmin_fmax() -> None:
    fb = mel_filterbank(20, 512, SR, fmin=300.0, fmax=3000.0)
    freqs = np.linspace(0, SR / 2, 257)
    assert not fb[:, freqs < 300].any()
    assert not fb[:, freqs > 3000].any()


def test_dct_matrix_is_orthonormal() -> None:
    m = dct_matrix(N_MELS, N_MELS).astype(np.float64)
    np.testing.assert_allclose(m @ m.T, np.eye(N_MELS), atol=1e-5)


def test_log_mel_shape() -> None:
    lm = log_mel(_noise(16_000))
    assert lm.shape == (101, N_MELS)
    assert np.isfinite(lm).all()


@pytest.mark.parametrize("n_samples", [2, 161, 16000, 16000 * 3 + 77])
def test_power_spectrogram_matches_torch_stft(n_samples: int) -> None:
    """numpy's FFT in place of torch.stft (centred frames, periodic Hann): float32 rounding."""
    torch = pytest.importorskip("torch")
    from avsync.features import power_spectrogram

    x = (np.random.default_rng(n_samples).standard_normal(n_samples) * 0.1).astype(np.float32)
    spec = torch.stft(torch.from_numpy(x), n_fft=AUDIO_WIN_SAMPLES, hop_length=AUDIO_HOP_SAMPLES,
                      window=torch.hann_window(AUDIO_WIN_SAMPLES), center=True,
                      pad_mode="constant", return_complex=True)
    ref = (spec.abs() ** 2).T.numpy()
    ours = power_spectrogram(x)
    assert ours.shape == ref.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=1e-6 * float(ref.max()))


def test_classical_audio_features_do_not_import_torch() -> None:
    """avcorr's audio analysis (no log-mel) runs without torch (~0.75 s of start-up)."""
    import subprocess
    import sys

    code = ("import sys, numpy as np; from avsync.features import audio_features; "
            "audio_features(np.random.default_rng(0).standard_normal(32000).astype(np.float32)); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
