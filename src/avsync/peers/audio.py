"""The audio front-ends of the published sync models, in numpy/scipy.

``syncnet_mfcc``: the MFCCs syncnet_python feeds SyncNet (python_speech_features' defaults:
25 ms rectangular frames every 10 ms, 512-point power spectrum, 26 mel filters on FFT bins, log,
orthonormal DCT-II, 13 coefficients, sine lifter 22, c0 replaced by the log frame energy), computed
on the 16-bit integer samples as syncnet_python reads them from its wav file.

``wav2lip_mel``: the 80-band log-mel of Wav2Lip's ``audio.melspectrogram`` (pre-emphasis 0.97,
librosa STFT with n_fft 800, hop 200, Hann window of 800, centred with reflect padding as in the
librosa 0.7 Wav2Lip pins, Slaney mel filters 55-7600 Hz, dB with a -100 dB floor, -20 dB
reference, scaled and clipped to [-4, 4]).

Both are tested against the reference implementations' outputs (tests/fixtures/peers_parity.npz).
"""

from __future__ import annotations

import numpy as np
from scipy.fft import dct
from scipy.signal import get_window, lfilter

SYNCNET_SAMPLE_RATE_HZ: int = 16_000
MFCC_WIN_SAMPLES: int = 400  # 25 ms
MFCC_HOP_SAMPLES: int = 160  # 10 ms -> 100 MFCC steps per second
MFCC_NFFT: int = 512
MFCC_N_FILTERS: int = 26
MFCC_N_COEFFS: int = 13
MFCC_LIFTER: int = 22
PREEMPHASIS: float = 0.97

MEL_NFFT: int = 800
MEL_HOP_SAMPLES: int = 200  # 12.5 ms -> 80 mel steps per second
MEL_N_BANDS: int = 80
MEL_FMIN_HZ: float = 55.0
MEL_FMAX_HZ: float = 7600.0
MEL_MIN_LEVEL_DB: float = -100.0
MEL_REF_LEVEL_DB: float = 20.0
MEL_MAX_ABS: float = 4.0


def to_int16_scale(samples: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] -> float64 values of the 16-bit PCM a wav file would hold."""
    return np.clip(np.round(np.asarray(samples, np.float64) * 32768.0), -32768, 32767)


def _hz_to_mel_htk(hz):
    return 2595.0 * np.log10(1.0 + np.asarray(hz, np.float64) / 700.0)


def _mel_to_hz_htk(mel):
    return 700.0 * (10.0 ** (np.asarray(mel, np.float64) / 2595.0) - 1.0)


def _bin_filterbank(n_filters: int, nfft: int, sample_rate_hz: int) -> np.ndarray:
    """(n_filters, nfft // 2 + 1) triangles whose corners sit on whole FFT bins (HTK mel scale)."""
    mel = np.linspace(0.0, _hz_to_mel_htk(sample_rate_hz / 2), n_filters + 2)
    edges = np.floor((nfft + 1) * _mel_to_hz_htk(mel) / sample_rate_hz).astype(int)
    bank = np.zeros((n_filters, nfft // 2 + 1))
    bins = np.arange(nfft // 2 + 1)
    for j in range(n_filters):
        lo, mid, hi = edges[j], edges[j + 1], edges[j + 2]
        rise = (bins >= lo) & (bins < mid)
        fall = (bins >= mid) & (bins < hi)
        bank[j, rise] = (bins[rise] - lo) / (mid - lo)
        bank[j, fall] = (hi - bins[fall]) / (hi - mid)
    return bank


def syncnet_mfcc(pcm: np.ndarray, sample_rate_hz: int = SYNCNET_SAMPLE_RATE_HZ) -> np.ndarray:
    """(13, M) MFCCs at 100 Hz of 16-bit-scaled samples ``pcm`` (see :func:`to_int16_scale`).

    M = 1 + ceil((N - 400) / 160) for N > 400 samples (the last frame zero-padded), else 1.
    """
    x = np.asarray(pcm, np.float64).reshape(-1)
    if x.size == 0:
        raise ValueError("no audio samples")
    x = np.concatenate([x[:1], x[1:] - PREEMPHASIS * x[:-1]])
    n = x.size
    n_frames = 1 if n <= MFCC_WIN_SAMPLES else 1 + int(np.ceil((n - MFCC_WIN_SAMPLES) / MFCC_HOP_SAMPLES))
    padded = np.zeros((n_frames - 1) * MFCC_HOP_SAMPLES + MFCC_WIN_SAMPLES)
    padded[:n] = x
    idx = np.arange(MFCC_WIN_SAMPLES)[None, :] + MFCC_HOP_SAMPLES * np.arange(n_frames)[:, None]
    power = np.abs(np.fft.rfft(padded[idx], MFCC_NFFT)) ** 2 / MFCC_NFFT
    tiny = np.finfo(np.float64).eps
    energy = power.sum(axis=1)
    energy[energy == 0] = tiny
    bands = power @ _bin_filterbank(MFCC_N_FILTERS, MFCC_NFFT, sample_rate_hz).T
    bands[bands == 0] = tiny
    cep = dct(np.log(bands), type=2, axis=1, norm="ortho")[:, :MFCC_N_COEFFS]
    cep *= 1.0 + (MFCC_LIFTER / 2.0) * np.sin(np.pi * np.arange(MFCC_N_COEFFS) / MFCC_LIFTER)
    cep[:, 0] = np.log(energy)
    return cep.T


def _slaney_mel_filters(sample_rate_hz: int, nfft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """(n_mels, nfft // 2 + 1) area-normalised triangles on the Slaney mel scale (librosa's default)."""
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0

    def hz_to_mel(f):
        f = np.asarray(f, np.float64)
        return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep,
                        f / f_sp)

    def mel_to_hz(m):
        m = np.asarray(m, np.float64)
        return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)

    fft_hz = np.linspace(0.0, sample_rate_hz / 2, nfft // 2 + 1)
    mel_hz = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(mel_hz)
    ramps = mel_hz[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    bank = np.maximum(0.0, np.minimum(lower, upper))
    return bank * (2.0 / (mel_hz[2:] - mel_hz[:-2]))[:, None]


def wav2lip_mel(samples: np.ndarray, sample_rate_hz: int = SYNCNET_SAMPLE_RATE_HZ) -> np.ndarray:
    """(80, M) normalised log-mel at 80 Hz of float samples in [-1, 1]; M = N // 200 + 1.

    Frame m is centred on sample 200 m (12.5 ms steps).
    """
    x = lfilter([1.0, -PREEMPHASIS], [1.0], np.asarray(samples, np.float64).reshape(-1))
    if x.size <= MEL_NFFT // 2:
        raise ValueError(f"need more than {MEL_NFFT // 2} audio samples")
    x = np.pad(x, MEL_NFFT // 2, mode="reflect")
    n_frames = 1 + (x.size - MEL_NFFT) // MEL_HOP_SAMPLES
    idx = np.arange(MEL_NFFT)[None, :] + MEL_HOP_SAMPLES * np.arange(n_frames)[:, None]
    window = get_window("hann", MEL_NFFT, fftbins=True)
    mag = np.abs(np.fft.rfft(x[idx] * window, MEL_NFFT, axis=1)).T
    mel = _slaney_mel_filters(sample_rate_hz, MEL_NFFT, MEL_N_BANDS, MEL_FMIN_HZ, MEL_FMAX_HZ) @ mag
    floor = np.exp(MEL_MIN_LEVEL_DB / 20.0 * np.log(10.0))
    db = 20.0 * np.log10(np.maximum(floor, mel)) - MEL_REF_LEVEL_DB
    scaled = 2 * MEL_MAX_ABS * (db - MEL_MIN_LEVEL_DB) / -MEL_MIN_LEVEL_DB - MEL_MAX_ABS
    return np.clip(scaled, -MEL_MAX_ABS, MEL_MAX_ABS)
