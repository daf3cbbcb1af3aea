"""Training-free sync methods: audio-visual correlation (default) and QMI (Liu & Sato).

Pure array functions. Inputs:
- ``visual``: (T, S) float per-frame visual signals of one face track (face.mouth.SIGNAL_NAMES).
- ``audio_at(shift_frames) -> (T, F)``: audio features read at the track's frame times plus
  ``shift_frames / fps`` (NaN where no audio exists). Positive shift = audio late.
Output: a score per candidate shift, higher = more likely.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy.signal import butter, sosfiltfilt

AudioAt = Callable[[float], np.ndarray]


def bandpass(x: np.ndarray, fps: float, low_hz: float = 1.0, high_hz: float = 8.0) -> np.ndarray:
    """Zero-phase band-pass along time (axis 0); NaN-free input of any length."""
    high_hz = min(high_hz, 0.45 * fps)
    if len(x) < 16:
        return x - x.mean(axis=0, keepdims=True)
    sos = butter(2, [low_hz, high_hz], btype="band", fs=fps, output="sos")
    padlen = min(len(x) - 1, 3 * (2 * len(sos) + 1))
    return sosfiltfilt(sos, x, axis=0, padlen=padlen)


def derivative(x: np.ndarray) -> np.ndarray:
    """Frame-to-frame difference along time, same length (first row repeated)."""
    d = np.diff(x, axis=0)
    return np.concatenate([d[:1], d], axis=0) if len(d) else np.zeros_like(x)


def _fill_nan(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ok = np.isfinite(x).all(axis=1)
    y = np.where(np.isfinite(x), x, 0.0)
    if ok.any():
        y[~ok] = np.nanmean(np.where(ok[:, None], y, np.nan), axis=0)
    return y, ok


def pearson_columns(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Pearson r between matching columns of a and b over the rows where mask is True."""
    if mask.sum() < 4:
        return np.zeros(a.shape[1])
    a, b = a[mask], b[mask]
    a = a - a.mean(0)
    b = b - b.mean(0)
    den = np.sqrt((a * a).sum(0) * (b * b).sum(0)) + 1e-12
    return (a * b).sum(0) / den


def correlation_curve(visual: np.ndarray, audio_at: AudioAt, shifts: Sequence[float],
                      fps: float, pairs: Sequence[tuple[int, int]],
                      transforms: Sequence[str] = ("diff", "band")) -> np.ndarray:
    """Mean Pearson correlation of (visual, audio) signal pairs at each candidate shift.

    pairs: (visual column, audio column) indices. Each pair is used after each transform
    ("diff": temporal derivative, "band": 1-8 Hz band-pass). Returns (len(shifts),).
    """
    vcols = [p[0] for p in pairs]
    acols = [p[1] for p in pairs]
    v = np.nan_to_num(visual[:, vcols].astype(np.float64))
    vt = {"diff": derivative(v), "band": bandpass(v, fps)}
    curve = np.zeros(len(shifts))
    for i, k in enumerate(shifts):
        a_raw, ok = _fill_nan(audio_at(k)[:, acols].astype(np.float64))
        at = {"diff": derivative(a_raw), "band": bandpass(a_raw, fps)}
        mask = ok & np.r_[False, ok[1:] & ok[:-1]]
        rs = [pearson_columns(vt[t], at[t], mask) for t in transforms]
        curve[i] = float(np.mean(rs))
    return curve


def _gram(x: np.ndarray, sigma: float) -> np.ndarray:
    d = x[:, None] - x[None, :]
    return np.exp(-(d * d) / (4 * sigma * sigma))  # Gaussian of two Parzen kernels convolved


def quadratic_mutual_information(x: np.ndarray, y: np.ndarray) -> float:
    """Euclidean-distance QMI (Principe) between two 1-D signals with Parzen estimates.

    QMI = V_J + V_M - 2 V_C; kernel width from Silverman's rule on standardised data.
    """
    if len(x) < 4:
        return 0.0
    x = (x - x.mean()) / (x.std() + 1e-9)
    y = (y - y.mean()) / (y.std() + 1e-9)
    sigma = 1.06 * len(x) ** (-0.2)
    gx, gy = _gram(x, sigma), _gram(y, sigma)
    v_j = float((gx * gy).mean())
    v_m = float(gx.mean() * gy.mean())
    v_c = float((gx.mean(1) * gy.mean(1)).mean())
    return v_j + v_m - 2 * v_c


def qmi_curve(visual: np.ndarray, audio_at: AudioAt, shifts: Sequence[float], fps: float,
              visual_col: int, audio_col: int, block_frames: int = 250) -> np.ndarray:
    """QMI between mouth vertical flow and audio power at each shift (blocks bound the O(T^2)).

    Returns (len(shifts),): the mean QMI over blocks of ``block_frames``.
    """
    v = np.nan_to_num(visual[:, visual_col].astype(np.float64))
    curve = np.zeros(len(shifts))
    for i, k in enumerate(shifts):
        a = audio_at(k)[:, audio_col].astype(np.float64)
        ok = np.isfinite(a)
        vals = []
        for s in range(0, len(v), block_frames):
            m = ok[s: s + block_frames]
            if m.sum() >= 8:
                vals.append(quadratic_mutual_information(v[s: s + block_frames][m],
                                                         np.exp(a[s: s + block_frames][m])))
        curve[i] = float(np.mean(vals)) if vals else 0.0
    return curve
