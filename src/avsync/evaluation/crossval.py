"""Speaker cross-validation helpers: folds by speaker group, cluster bootstrap, duration buckets.

Used by ``benchmarks/cv.py`` (issue 11, part 3). A fold holds whole speaker groups
(``avsync.data.splits.speaker_group``), so no person is on both sides; intervals resample speaker
groups (not clips), since clips of one person are not independent evidence.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from avsync.errors import AvsyncError

DURATION_BUCKETS_S: tuple[float, ...] = (2.0, 4.0, 8.0)
"""Edges (s) of the clip-duration buckets: < 2, 2-4, 4-8, >= 8 s."""


def duration_bucket(duration_s: float, edges: Sequence[float] = DURATION_BUCKETS_S) -> str:
    """'<2', '2-4', '4-8' or '>=8' (for the default edges) for a duration in seconds."""
    if duration_s < edges[0]:
        return f"<{edges[0]:g}"
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        if duration_s < hi:
            return f"{lo:g}-{hi:g}"
    return f">={edges[-1]:g}"


def speaker_folds(groups: Mapping[str, float], k: int) -> dict[str, int]:
    """Assign speaker groups to ``k`` folds, balancing the summed weight (e.g. seconds).

    groups: group name -> weight. Greedy: heaviest group first, each to the currently lightest
    fold (ties: lowest fold index; equal weights: by name), so the result is deterministic.
    Returns group -> fold index in [0, k).
    """
    if k < 2:
        raise AvsyncError(f"cross-validation needs at least 2 folds, got {k}")
    if len(groups) < k:
        raise AvsyncError(f"{len(groups)} speaker groups cannot fill {k} folds")
    load = [0.0] * k
    out: dict[str, int] = {}
    for g in sorted(groups, key=lambda g: (-float(groups[g]), g)):
        f = int(np.argmin(load))
        out[g] = f
        load[f] += float(groups[g])
    return out


def cluster_bootstrap(values: Sequence[float], clusters: Sequence[str],
                      stat: Callable[[np.ndarray], float] = np.mean, n_boot: int = 2000,
                      seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """(estimate, low, high): ``stat`` of ``values`` and its bootstrap interval, resampling clusters.

    values: one number per case (e.g. 1.0 right / 0.0 wrong); clusters: the speaker group of each
    case. Each replicate draws as many clusters as there are, with replacement, and pools their
    cases. NaN values are ignored. Empty input gives NaNs.
    """
    v = np.asarray(values, np.float64)
    c = np.asarray(clusters)
    ok = np.isfinite(v)
    v, c = v[ok], c[ok]
    if len(v) == 0:
        return float("nan"), float("nan"), float("nan")
    names, idx = np.unique(c, return_inverse=True)
    members = [np.flatnonzero(idx == j) for j in range(len(names))]
    rng = np.random.default_rng(seed)
    reps = np.empty(n_boot)
    for b in range(n_boot):
        pick = rng.integers(0, len(names), len(names))
        reps[b] = stat(v[np.concatenate([members[j] for j in pick])])
    a = (1.0 - level) / 2 * 100
    return float(stat(v)), float(np.percentile(reps, a)), float(np.percentile(reps, 100 - a))


def weight_grid(n_members: int, values: Sequence[float] = (0.0, 0.5, 1.0, 1.5, 2.0)
                ) -> list[tuple[float, ...]]:
    """Candidate fusion weights: every combination of ``values`` with at least one non-zero,
    up to scale (the first of each direction, normalised by its largest weight, is kept)."""
    grid = np.array(np.meshgrid(*[values] * n_members, indexing="ij")).reshape(n_members, -1).T
    seen: set[tuple[float, ...]] = set()
    out = []
    for w in grid:
        if not np.any(w > 0):
            continue
        key = tuple(np.round(w / w.max(), 3))
        if key not in seen:
            seen.add(key)
            out.append(tuple(float(x) for x in w / w.max()))
    return out


def fit_weights(candidates: Sequence[tuple[float, ...]], objective: Callable[[tuple[float, ...]], float]
                ) -> tuple[tuple[float, ...], float]:
    """The candidate with the highest objective (first one on ties) and that objective."""
    if not candidates:
        raise AvsyncError("no candidate weights to fit")
    best, best_v = candidates[0], -np.inf
    for w in candidates:
        v = float(objective(w))
        if v > best_v + 1e-12:
            best, best_v = w, v
    return tuple(best), best_v


def group_counts(groups: Sequence[str]) -> dict[str, int]:
    """Group -> number of items (cases or clips)."""
    out: dict[str, int] = defaultdict(int)
    for g in groups:
        out[g] += 1
    return dict(out)
