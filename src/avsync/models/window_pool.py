"""Pooling window scores over candidate shifts without dropping the edge windows.

``NeuralSyncMethod.mean_scores`` averages only the windows that have audio at EVERY candidate
shift; a window near either end of a clip lacks audio at the largest shifts, so on a 1.5 s clip
searched over +-15 frames only the few middle windows count. :func:`centred_pool` keeps every
window: each window's scores are centred on their mean over the shifts it does have, and a
shift's score is the mean of the centred scores of the windows that reach it. Centring removes
each window's own level, so shifts reached by different sets of windows stay comparable.
"""

from __future__ import annotations

import warnings

import numpy as np

MIN_SHIFTS_PER_WINDOW: int = 3
"""A window with fewer finite shift scores than this is left out (its centre is meaningless)."""


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
    with warnings.catch_warnings():  # all-NaN columns stay NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        centred = s - np.nanmean(s, axis=1, keepdims=True)
        return np.nanmean(centred, axis=0)
