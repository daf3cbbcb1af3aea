"""Audio features on a fine 10 ms grid, sampled at any times (video frame times + a shift).

Working on the container clock in seconds makes every frame rate (29.97, VFR) the same case:
the visual signal lives at the true frame times, and the audio feature for candidate offset
``k`` frames is read at ``frame_time + k / fps`` by linear interpolation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from avsync.timing import AUDIO_HOP_SAMPLES, AUDIO_WIN_SAMPLES, SAMPLE_RATE_HZ

N_MELS: int = 40
SILENCE_RMS: float = 1e-4
"""Audio whose RMS (full scale 1) is below this carries no usable speech."""
N_MFCC: int = 13
BANDS_HZ: tuple[tuple[float, float], ...] = ((80, 300), (300, 1000), (1000, 3000), (3000, 8000))
AUDIO_NAMES: tuple[str, ...] = ("log_energy", "speech_energy", "flux") + tuple(
    f"band_{lo:.0f}_{hi:.0f}" for lo, hi in BANDS_HZ) + tuple(f"mfcc{i}" for i in range(N_MFCC))
"""Columns of AudioFeatures.values; speech_energy is the 300-3000 Hz log energy."""


def is_silent(samples: np.ndarray) -> bool:
    """True for empty audio or audio whose RMS is below SILENCE_RMS."""
    return len(samples) == 0 or float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) < SILENCE_RMS


def mel_filterbank(n_mels: int, n_fft: int, sample_rate_hz: int, fmin: float = 40.0,
                   fmax: float | None = None) -> np.ndarray:
    """Triangular HTK-mel filterbank, (n_mels, n_fft // 2 + 1)."""
    fmax = fmax or sample_rate_hz / 2
    mel = lambda f: 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)  # noqa: E731
    hz = lambda m: 700.0 * (10 ** (np.asarray(m) / 2595.0) - 1.0)  # noqa: E731
    edges = hz(np.linspace(mel(fmin), mel(fmax), n_mels + 2))
    freqs = np.linspace(0, sample_rate_hz / 2, n_fft // 2 + 1)
    fb = np.zeros((n_mels, len(freqs)), dtype=np.float32)
    for i in range(n_mels):
        lo, mid, hi = edges[i], edges[i + 1], edges[i + 2]
        up = (freqs - lo) / max(mid - lo, 1e-9)
        down = (hi - freqs) / max(hi - mid, 1e-9)
        fb[i] = np.clip(np.minimum(up, down), 0, None)
    return fb


def dct_matrix(n_out: int, n_in: int) -> np.ndarray:
    """Orthonormal DCT-II matrix (n_out, n_in) for MFCCs."""
    n = np.arange(n_in)
    m = np.cos(np.pi / n_in * (n[None, :] + 0.5) * np.arange(n_out)[:, None]) * np.sqrt(2 / n_in)
    m[0] /= np.sqrt(2)
    return m.astype(np.float32)


def hann_window(win: int) -> np.ndarray:
    """(win,) float32 periodic Hann window (``torch.hann_window``'s default, to float rounding)."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)).astype(np.float32)


def frame_power(seg: np.ndarray, n: int, hop: int = AUDIO_HOP_SAMPLES,
                win: int = AUDIO_WIN_SAMPLES) -> np.ndarray:
    """|FFT|^2 of the first ``n`` Hann-windowed frames ``seg[i * hop: i * hop + win]``:
    (n, win // 2 + 1) float32. numpy's FFT, not torch's: the classical methods then run without
    importing torch (~0.75 s); the powers agree with ``torch.stft`` to float32 rounding."""
    frames = sliding_window_view(np.asarray(seg, np.float32), win)[::hop][:n] * hann_window(win)
    spec = np.fft.rfft(frames, axis=1)
    return (spec.real**2 + spec.imag**2).astype(np.float32)


def power_spectrogram(samples: np.ndarray, hop: int = AUDIO_HOP_SAMPLES,
                      win: int = AUDIO_WIN_SAMPLES) -> np.ndarray:
    """|STFT|^2 with centred frames: (n_hops, win // 2 + 1); frame i is centred on sample i*hop
    (``torch.stft(center=True, pad_mode="constant")``'s framing)."""
    x = np.asarray(samples, np.float32).reshape(-1)
    if x.size < 2:
        x = np.zeros(2, np.float32)
    padded = np.concatenate([np.zeros(win // 2, np.float32), x, np.zeros(win // 2, np.float32)])
    return frame_power(padded, 1 + (len(padded) - win) // hop, hop, win)


@dataclass
class AudioFeatures:
    """Audio features on a regular grid.

    times_s: (N,) centre time of each hop on the container clock; values: (N, F) float32 with
    columns AUDIO_NAMES; logmel: (N, N_MELS) float32 natural-log mel power on the same grid
    (what the neural methods read; None when not computed).
    """

    times_s: np.ndarray
    values: np.ndarray
    names: tuple[str, ...] = AUDIO_NAMES
    logmel: np.ndarray | None = None

    @property
    def start_s(self) -> float:
        return float(self.times_s[0])

    @property
    def end_s(self) -> float:
        return float(self.times_s[-1])

    def column(self, name: str) -> np.ndarray:
        return self.values[:, self.names.index(name)]

    def at(self, times_s: np.ndarray, columns: list[int] | None = None) -> np.ndarray:
        """Linearly interpolated features at arbitrary times: (len(times_s), F); NaN outside."""
        t = np.asarray(times_s, dtype=np.float64)
        pos = (t - self.times_s[0]) / (self.times_s[1] - self.times_s[0]) if len(
            self.times_s) > 1 else np.zeros_like(t)
        vals = self.values if columns is None else self.values[:, columns]
        i0 = np.clip(np.floor(pos).astype(np.int64), 0, len(vals) - 1)
        i1 = np.clip(i0 + 1, 0, len(vals) - 1)
        w = (pos - i0)[:, None]
        out = vals[i0] * (1 - w) + vals[i1] * w
        tol = 1e-6  # grid times themselves must not fall outside through rounding
        out[(pos < -tol) | (pos > len(vals) - 1 + tol)] = np.nan
        return out.astype(np.float32)


BLOCK_HOPS: int = 6000
"""Audio features are computed in blocks of this many hops (60 s) so memory stays flat."""


class FeatureAccumulator:
    """Computes :func:`audio_features` from consecutive blocks of samples, in flat memory.

    ``feed`` mono float32 blocks at SAMPLE_RATE_HZ in order, then ``finish``: only the compact
    per-hop features (and the log-mel) are kept, plus at most one BLOCK_HOPS block of samples.
    The result is identical to ``audio_features`` on the concatenated samples (same blocks).
    ``rms`` (after finish) is the RMS of all the samples fed. ``keep_logmel=False`` drops the
    log-mel (AudioFeatures.logmel None: only the neural methods read it).
    """

    def __init__(self, start_s: float = 0.0, keep_logmel: bool = True) -> None:
        self.start_s = start_s
        self.keep_logmel = keep_logmel
        self._pending: list[np.ndarray] = [np.zeros(AUDIO_WIN_SAMPLES // 2, np.float32)]
        self._n_pending = AUDIO_WIN_SAMPLES // 2
        self._n_samples = 0
        self._sum_sq = 0.0
        self._next_hop = 0  # first hop of the next block; _pending starts at its first sample
        self._blocks: list[np.ndarray] = []
        self._mels: list[np.ndarray] = []
        self._prev_logmel: np.ndarray | None = None
        freqs = np.linspace(0, SAMPLE_RATE_HZ / 2, AUDIO_WIN_SAMPLES // 2 + 1)
        self._fb = mel_filterbank(N_MELS, AUDIO_WIN_SAMPLES, SAMPLE_RATE_HZ).T
        self._dct = dct_matrix(N_MFCC, N_MELS).T
        self._speech = (freqs >= 300) & (freqs < 3000)
        self._bands = [(freqs >= lo) & (freqs < hi) for lo, hi in BANDS_HZ]

    def feed(self, samples: np.ndarray) -> None:
        x = np.asarray(samples, np.float32).reshape(-1)
        self._n_samples += x.size
        self._sum_sq += float(np.square(x, dtype=np.float64).sum())
        self._pending.append(x)
        self._n_pending += x.size
        need = (BLOCK_HOPS - 1) * AUDIO_HOP_SAMPLES + AUDIO_WIN_SAMPLES
        if self._n_pending >= need:
            buf = np.concatenate(self._pending)
            start = 0
            while len(buf) - start >= need:
                self._block(buf[start: start + need], BLOCK_HOPS)
                start += BLOCK_HOPS * AUDIO_HOP_SAMPLES
            self._pending = [buf[start:]]
            self._n_pending = len(buf) - start

    def _block(self, seg: np.ndarray, n: int) -> None:
        power = frame_power(seg, n)
        eps = 1e-8
        logmel = np.log(power @ self._fb + eps)
        if self.keep_logmel:
            self._mels.append(logmel.astype(np.float32))
        first = logmel[:1] if self._prev_logmel is None else self._prev_logmel
        flux = np.clip(np.diff(np.concatenate([first, logmel]), axis=0), 0, None).mean(1)
        self._prev_logmel = logmel[-1:]
        self._blocks.append(np.column_stack([
            np.log(power.sum(1) + eps), np.log(power[:, self._speech].sum(1) + eps), flux,
            *[np.log(power[:, m].sum(1) + eps) for m in self._bands], logmel @ self._dct,
        ]).astype(np.float32))
        self._next_hop += n

    @property
    def rms(self) -> float:
        return float(np.sqrt(self._sum_sq / self._n_samples)) if self._n_samples else 0.0

    def finish(self) -> AudioFeatures:
        """The features of everything fed (hop i centred on sample i * hop)."""
        n_hops = self._n_samples // AUDIO_HOP_SAMPLES + 1
        tail = np.zeros(AUDIO_WIN_SAMPLES // 2 + AUDIO_HOP_SAMPLES, np.float32)
        buf = np.concatenate([*self._pending, tail])
        self._pending, start = [], 0
        while self._next_hop < n_hops:
            n = min(BLOCK_HOPS, n_hops - self._next_hop)
            self._block(buf[start: start + (n - 1) * AUDIO_HOP_SAMPLES + AUDIO_WIN_SAMPLES], n)
            start += n * AUDIO_HOP_SAMPLES
        values = np.concatenate(self._blocks)
        self._blocks = []  # freed before the log-mel is joined: one extra copy at a time
        logmel = np.concatenate(self._mels) if self.keep_logmel else None
        self._mels = []
        times = self.start_s + np.arange(len(values)) * (AUDIO_HOP_SAMPLES / SAMPLE_RATE_HZ)
        return AudioFeatures(times_s=times, values=values, logmel=logmel)


def audio_features(samples: np.ndarray, start_s: float = 0.0,
                   sample_rate_hz: int = SAMPLE_RATE_HZ) -> AudioFeatures:
    """Compute AUDIO_NAMES on a 10 ms grid from mono samples starting at ``start_s``.

    Hop i is centred on sample i * hop (as ``torch.stft(center=True)``); the work is done in
    blocks of BLOCK_HOPS hops (:class:`FeatureAccumulator`, which also takes the samples in
    pieces), so memory does not grow with the length beyond the result.
    """
    if sample_rate_hz != SAMPLE_RATE_HZ:
        raise ValueError(f"expected {SAMPLE_RATE_HZ} Hz audio, got {sample_rate_hz}")
    acc = FeatureAccumulator(start_s)
    acc.feed(samples)
    return acc.finish()


def stream_features(blocks: Iterable[tuple[float, np.ndarray]],
                    keep_logmel: bool = True) -> tuple[AudioFeatures, float]:
    """Features and RMS of ``(start_s, samples)`` blocks (``avsync.io.audio.iter_audio_blocks``),
    holding one block of samples at a time. An empty stream gives the features of no samples."""
    acc: FeatureAccumulator | None = None
    for start_s, block in blocks:
        if acc is None:
            acc = FeatureAccumulator(start_s, keep_logmel)
        acc.feed(block)
    acc = acc or FeatureAccumulator(keep_logmel=keep_logmel)
    return acc.finish(), acc.rms


def log_mel(samples: np.ndarray, n_mels: int = N_MELS) -> np.ndarray:
    """Log-mel spectrogram (n_hops, n_mels) on the 10 ms grid (for neural methods)."""
    power = power_spectrogram(samples)
    return np.log(power @ mel_filterbank(n_mels, AUDIO_WIN_SAMPLES, SAMPLE_RATE_HZ).T + 1e-8)


def shift_samples(samples: np.ndarray, shift_frames: float, fps: float,
                  sample_rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """Make the audio LATE by ``shift_frames`` (negative: early), keeping its length.

    Pads with silence at the start and trims the end (or the reverse): the evaluation
    protocol's way to build a case whose true offset is ``shift_frames``.
    """
    n = int(round(shift_frames * sample_rate_hz / fps))
    out = np.zeros_like(samples)
    if abs(n) >= len(samples):
        return out
    if n >= 0:
        out[n:] = samples[: len(samples) - n] if n < len(samples) else samples[:0]
    else:
        out[: len(samples) + n] = samples[-n:]
    return out
