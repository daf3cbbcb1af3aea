"""Training-free sync methods: audio-visual correlation (default) and QMI (Liu & Sato).

Pure array functions. Inputs:
- ``visual``: (T, S) float per-frame visual signals of one face track (face.mouth.SIGNAL_NAMES).
- ``audio_at(shift_frames) -> (T, F)``: audio features read at the track's frame times plus
  ``shift_frames / fps`` (NaN where no audio exists). Positive shift = audio late.
Output: a score per candidate shift, higher = more likely.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence

import numpy as np

from avsync.models.bandpass import butter_bandpass_sos, sosfiltfilt

AudioAt = Callable[[float], np.ndarray]


@functools.lru_cache(maxsize=64)
def _band_sos(low_hz: float, high_hz: float, fps: float) -> np.ndarray:
    """Second-order sections of the 2nd-order Butterworth band-pass (designed once per rate)."""
    return butter_bandpass_sos(2, low_hz, high_hz, fps)


def bandpass_axis(x: np.ndarray, fps: float, axis: int = 0, low_hz: float = 1.0,
                  high_hz: float = 8.0) -> np.ndarray:
    """Zero-phase 1-8 Hz band-pass along ``axis`` (time); short inputs are only de-meaned."""
    high_hz = min(high_hz, 0.45 * fps)
    n = x.shape[axis]
    if n < 16:
        return x - x.mean(axis=axis, keepdims=True)
    sos = _band_sos(float(low_hz), float(high_hz), float(fps))
    padlen = min(n - 1, 3 * (2 * len(sos) + 1))
    return sosfiltfilt(sos, x, axis=axis, padlen=padlen)


def bandpass(x: np.ndarray, fps: float, low_hz: float = 1.0, high_hz: float = 8.0) -> np.ndarray:
    """Zero-phase band-pass along time (axis 0); NaN-free input of any length."""
    return bandpass_axis(x, fps, 0, low_hz, high_hz)


def derivative(x: np.ndarray) -> np.ndarray:
    """Frame-to-frame difference along time, same length (first row repeated)."""
    d = np.diff(x, axis=0)
    return np.concatenate([d[:1], d], axis=0) if len(d) else np.zeros_like(x)


def _fill_nan(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Replace NaN rows of (..., T, F) by the per-column mean of the valid rows.

    Returns the filled array and the (..., T) mask of rows that were valid.
    """
    ok = np.isfinite(x).all(axis=-1)
    valid = np.where(ok[..., None], x, np.nan)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nan_to_num(np.nanmean(valid, axis=-2, keepdims=True))
    return np.where(ok[..., None], np.nan_to_num(x), mean), ok


def pearson_columns(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Pearson r between matching columns of a and b (..., T, P) over rows where mask (..., T).

    Returns (..., P); 0 where fewer than 4 rows are valid.
    """
    m = mask[..., None].astype(np.float64)
    n = m.sum(axis=-2, keepdims=True)
    safe = np.maximum(n, 1.0)
    a = (a - (a * m).sum(-2, keepdims=True) / safe) * m
    b = (b - (b * m).sum(-2, keepdims=True) / safe) * m
    den = np.sqrt((a * a).sum(-2) * (b * b).sum(-2)) + 1e-12
    r = (a * b).sum(-2) / den
    return np.where(n[..., 0, :] >= 4, r, 0.0)


def correlation_curve(visual: np.ndarray, audio_at: AudioAt, shifts: Sequence[float],
                      fps: float, pairs: Sequence[tuple[int, int]],
                      transforms: Sequence[str] = ("diff", "band")) -> np.ndarray:
    """Mean Pearson correlation of (visual, audio) signal pairs at each candidate shift.

    pairs: (visual column, audio column) indices. Each pair is used after each transform
    ("diff": temporal derivative, "band": 1-8 Hz band-pass), computed inside the given frames
    only. All shifts are processed at once. Returns (len(shifts),).
    """
    return correlation_curves([visual], audio_at, shifts, fps, pairs, transforms)[0]


def correlation_curves(visuals: Sequence[np.ndarray], audio_at: AudioAt, shifts: Sequence[float],
                       fps: float, pairs: Sequence[tuple[int, int]],
                       transforms: Sequence[str] = ("diff", "band")) -> np.ndarray:
    """:func:`correlation_curve` of several (T, S) visual inputs against the same audio (the
    null displacements of one track): the audio side is read and transformed once. Each row is
    computed exactly as by ``correlation_curve`` alone. Returns (len(visuals), len(shifts))."""
    vcols = [p[0] for p in pairs]
    acols = [p[1] for p in pairs]
    a_raw, ok = _fill_nan(np.stack([audio_at(k)[:, acols] for k in shifts]).astype(np.float64))
    mask = ok & np.concatenate([np.zeros_like(ok[:, :1]), ok[:, 1:] & ok[:, :-1]], axis=1)
    audio_t = {}
    for t in transforms:
        if t == "diff":
            audio_t[t] = np.concatenate([np.diff(a_raw, axis=1)[:, :1], np.diff(a_raw, axis=1)], axis=1)
        elif t == "band":
            audio_t[t] = bandpass_axis(a_raw, fps, axis=1)
        else:
            raise ValueError(f"unknown transform {t!r}")
    out = []
    for visual in visuals:
        v = np.nan_to_num(visual[:, vcols].astype(np.float64))  # (T, P)
        rs = []
        for t in transforms:
            vt = derivative(v) if t == "diff" else bandpass(v, fps)
            at = audio_t[t]
            rs.append(pearson_columns(np.broadcast_to(vt, at.shape), at, mask))  # (K, P)
        out.append(np.mean(rs, axis=(0, 2)))
    return np.array(out).reshape(len(visuals), len(shifts))


def _gram(x: np.ndarray, sigma: float) -> np.ndarray:
    d = x[:, None] - x[None, :]
    return np.exp(-(d * d) / (4 * sigma * sigma))  # Gaussian of two Parzen kernels convolved


def _standardise(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / (x.std() + 1e-9)


def _qmi_from_grams(gx: np.ndarray, gy: np.ndarray) -> float:
    v_j = float((gx * gy).mean())
    v_m = float(gx.mean() * gy.mean())
    v_c = float((gx.mean(1) * gy.mean(1)).mean())
    return v_j + v_m - 2 * v_c


def quadratic_mutual_information(x: np.ndarray, y: np.ndarray) -> float:
    """Euclidean-distance QMI (Principe) between two 1-D signals with Parzen estimates.

    QMI = V_J + V_M - 2 V_C; kernel width from Silverman's rule on standardised data.
    """
    if len(x) < 4:
        return 0.0
    sigma = 1.06 * len(x) ** (-0.2)
    return _qmi_from_grams(_gram(_standardise(x), sigma), _gram(_standardise(y), sigma))


def qmi_curve(visual: np.ndarray, audio_at: AudioAt, shifts: Sequence[float], fps: float,
              visual_col: int, audio_col: int, block_frames: int = 250) -> np.ndarray:
    """QMI between mouth vertical flow and audio power at each shift (blocks bound the O(T^2)).

    Returns (len(shifts),): the mean QMI over blocks of ``block_frames``.
    """
    v = np.nan_to_num(visual[:, visual_col].astype(np.float64))
    audio = [audio_at(k)[:, audio_col].astype(np.float64) for k in shifts]
    curve = np.zeros(len(shifts))
    vals: list[list[float]] = [[] for _ in shifts]
    for s in range(0, len(v), block_frames):
        vb = v[s: s + block_frames]
        gx_full = None
        for i, a in enumerate(audio):
            ab = a[s: s + block_frames]
            m = np.isfinite(ab)
            if m.sum() < 8:
                continue
            sigma = 1.06 * int(m.sum()) ** (-0.2)
            if m.all():
                if gx_full is None:
                    gx_full = _gram(_standardise(vb), sigma)
                gx = gx_full
            else:
                gx = _gram(_standardise(vb[m]), sigma)
            vals[i].append(_qmi_from_grams(gx, _gram(_standardise(np.exp(ab[m])), sigma)))
    for i, v_i in enumerate(vals):
        curve[i] = float(np.mean(v_i)) if v_i else 0.0
    return curve
