"""Sub-frame peaks and zero calibration of score curves over candidate shifts (frames).

* :func:`refine_peak`: the best shift of a curve sampled at whole frames, refined below one
  frame by a parabola through the maximum and its two neighbours (the peak of a smooth curve
  sampled every frame; clipped to +-0.5 frame around the best sample).
* :func:`calibrated_scores`: a method's curve read ``bias_frames`` away, so that its zero is
  the zero of the corpora whose sync is established (GRID, LRS2/LRS3 as published). A method
  whose curve peaks at ``b`` on in-sync clips has ``bias_frames = b``; its calibrated curve is
  ``C'(k) = C(k + b)``, computed on whole-frame shifts around ``shifts + b`` and interpolated by
  a cubic spline. ``bias_frames`` is measured by ``benchmarks/bias.py`` and stored with the
  method (a checkpoint's ``calibration`` metadata), never as a constant here.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

PEAK_DECIMALS: int = 1
"""Reported offsets (frames) are rounded to this many decimals."""


def refine_peak(shifts_frames: np.ndarray, scores: np.ndarray) -> float:
    """Sub-frame position (frames) of the maximum of ``scores`` (K,) sampled at ``shifts_frames``
    (K,) consecutive whole frames. NaN scores are ignored; a maximum at either end of the range
    or with a NaN / flat neighbourhood stays on its sample. Raises ValueError when all are NaN."""
    s = np.asarray(scores, np.float64)
    x = np.asarray(shifts_frames, np.float64)
    if not np.isfinite(s).any():
        raise ValueError("the curve has no finite score")
    i = int(np.nanargmax(s))
    if i == 0 or i == len(s) - 1:
        return float(x[i])
    y0, y1, y2 = s[i - 1], s[i], s[i + 1]
    den = y0 - 2.0 * y1 + y2
    if not (np.isfinite(y0) and np.isfinite(y2)) or den >= -1e-12:
        return float(x[i])
    delta = float(np.clip(0.5 * (y0 - y2) / den, -0.5, 0.5))
    return float(x[i] + delta * (x[i + 1] - x[i - 1]) / 2.0)


def round_frames(offset_frames: float) -> float:
    """An offset in frames as reported (PEAK_DECIMALS decimals, no negative zero)."""
    return round(float(offset_frames), PEAK_DECIMALS) + 0.0


def calibrated_scores(score: Callable[[np.ndarray], np.ndarray], shifts_frames: np.ndarray,
                      bias_frames: float) -> np.ndarray:
    """(K,) ``score`` read at ``shifts_frames + bias_frames`` (see the module doc).

    score: whole-frame shifts (J,) int -> (J,) scores; it is called once, on the whole frames
    from one below to two above the shifted range, and the result is interpolated by a cubic
    spline through its finite values (NaN where fewer than 4 are finite).
    """
    shifts = np.asarray(shifts_frames)
    if bias_frames == 0.0:
        return np.asarray(score(shifts), np.float64)
    want = shifts.astype(np.float64) + float(bias_frames)
    lo, hi = math.floor(want.min()) - 1, math.ceil(want.max()) + 2
    grid = np.arange(lo, hi + 1)
    vals = np.asarray(score(grid), np.float64)
    ok = np.isfinite(vals)
    if ok.sum() < 4:
        return np.full(len(shifts), np.nan)
    out = cubic_spline(grid[ok].astype(np.float64), vals[ok], want)
    out[(want < grid[ok][0]) | (want > grid[ok][-1])] = np.nan
    return out


def cubic_spline(x: np.ndarray, y: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The not-a-knot cubic spline through (x, y), n >= 4 increasing knots, at the points ``at``
    (outside the knots: the end pieces extended). The same curve as SciPy's
    ``CubicSpline(x, y)`` (tested to 1e-9), without importing ``scipy.interpolate`` (~0.3 s of
    every command's start). Solved for the second derivatives M at the knots: the usual C2
    equations at the inner knots, and at both ends a continuous third derivative over the first
    and the last inner knot."""
    x, y, at = (np.asarray(a, np.float64) for a in (x, y, at))
    n = len(x)
    h = np.diff(x)
    d = np.diff(y) / h
    a = np.zeros((n, n))
    b = np.zeros(n)
    for i in range(1, n - 1):
        a[i, i - 1:i + 2] = h[i - 1], 2.0 * (h[i - 1] + h[i]), h[i]
        b[i] = 6.0 * (d[i] - d[i - 1])
    a[0, :3] = -h[1], h[0] + h[1], -h[0]
    a[-1, -3:] = -h[-1], h[-2] + h[-1], -h[-2]
    m = np.linalg.solve(a, b)
    j = np.clip(np.searchsorted(x, at, side="right") - 1, 0, n - 2)
    hj, left, right = h[j], x[j + 1] - at, at - x[j]
    return (m[j] * left ** 3 + m[j + 1] * right ** 3) / (6.0 * hj) \
        + (y[j] / hj - m[j] * hj / 6.0) * left + (y[j + 1] / hj - m[j + 1] * hj / 6.0) * right
