"""Pooling window scores over candidate shifts without dropping the edge windows.

``NeuralSyncMethod.mean_scores`` averages only the windows that have audio at EVERY candidate
shift; a window near either end of a clip lacks audio at the largest shifts, so on a 1.5 s clip
searched over +-15 frames only the few middle windows count. :func:`centred_pool` keeps every
window: the (W, K) scores are fitted as ``level[w] + curve[k]`` over the finite entries (a
two-way additive fit with missing cells, by alternating means), and ``curve`` is the pooled
score. A window's own level is thereby removed using the shifts it shares with the others, so
shifts reached by different sets of windows stay comparable (centring each window on its own
mean would not do: an edge window that only sees the far shifts would be centred on them and
push those shifts up).
"""

from __future__ import annotations

import warnings

import numpy as np

MIN_SHIFTS_PER_WINDOW: int = 3
"""A window with fewer finite shift scores than this is left out (its level is meaningless)."""
ALS_ITERATIONS: int = 50
"""Alternating-means iterations of the additive fit (converges in a few on real curves)."""


def centred_pool(window_scores: np.ndarray, min_shifts: int = MIN_SHIFTS_PER_WINDOW) -> np.ndarray:
    """(W, K) scores per window and shift (NaN: no audio there) -> (K,) pooled scores.

    NaN where no kept window reaches a shift; all NaN when no window is kept.
    """
    s = np.asarray(window_scores, np.float64)
    if s.ndim != 2:
        raise ValueError(f"expected (W, K) window scores, got shape {s.shape}")
    keep = np.isfinite(s).sum(1) >= min_shifts
    if not keep.any():
        return np.full(s.shape[1], np.nan)
    s = s[keep]
    ok = np.isfinite(s)
    filled = np.where(ok, s, 0.0)
    level = np.zeros(len(s))
    with warnings.catch_warnings():  # all-NaN columns stay NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        for _ in range(ALS_ITERATIONS):
            curve = np.where(ok, filled - level[:, None], 0.0).sum(0) / ok.sum(0)
            level = np.where(ok, filled - np.nan_to_num(curve)[None], 0.0).sum(1) / ok.sum(1)
        curve = np.where(ok, filled - level[:, None], 0.0).sum(0) / ok.sum(0)
    return curve - np.nanmean(curve)
