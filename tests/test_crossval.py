"""Speaker cross-validation helpers (avsync.evaluation.crossval), edge-window pooling
(avsync.models.window_pool) and curve fusion from stored member curves (models.fusion.fuse_curves)."""

from __future__ import annotations

import numpy as np
import pytest

from avsync.data.splits import speaker_group
from avsync.errors import AvsyncError
from avsync.evaluation.crossval import (
    cluster_bootstrap,
    duration_bucket,
    fit_weights,
    speaker_folds,
    weight_grid,
)
from avsync.models.fusion import fuse_curves, standardise
from avsync.models.window_pool import centred_pool


def test_duration_buckets():
    assert [duration_bucket(d) for d in (0.5, 1.99, 2.0, 3.9, 4.0, 7.9, 8.0, 60.0)] == [
        "<2", "<2", "2-4", "2-4", "4-8", "4-8", ">=8", ">=8"]


def test_speaker_folds_keep_groups_whole_and_balance():
    groups = {"GRID s1": 200.0, **{f"g{i}": 10.0 + i for i in range(20)}}
    fold = speaker_folds(groups, 4)
    assert set(fold) == set(groups)
    load = np.zeros(4)
    for g, f in fold.items():
        load[f] += groups[g]
    # the heavy group fills one fold alone; the others share the rest evenly
    assert sum(1 for f in fold.values() if f == fold["GRID s1"]) == 1
    rest = np.delete(load, fold["GRID s1"])
    assert rest.max() - rest.min() <= 20.0
    assert speaker_folds(groups, 4) == fold  # deterministic
    with pytest.raises(AvsyncError):
        speaker_folds({"a": 1.0}, 2)


def test_andrew_ng_clips_are_one_speaker():
    assert speaker_group("styletalk/muxed/andrew_clip_1_video+wav") == speaker_group(
        "styletalk/muxed/andrew_clip_2_video+wav")


def test_cluster_bootstrap_resamples_groups():
    rng = np.random.default_rng(1)
    # 10 groups, each all-right or all-wrong: the interval must be wide (groups, not cases, count)
    values = np.repeat([1.0] * 5 + [0.0] * 5, 50)
    groups = np.repeat([f"g{i}" for i in range(10)], 50)
    est, lo, hi = cluster_bootstrap(values, groups)
    assert est == pytest.approx(0.5)
    assert lo < 0.3 and hi > 0.7
    # the same values as independent groups give a narrow interval
    est2, lo2, hi2 = cluster_bootstrap(rng.permutation(values), [f"c{i}" for i in range(500)])
    assert hi2 - lo2 < 0.15
    assert np.isnan(cluster_bootstrap([], [])[0])


def test_weight_grid_and_fit():
    grid = weight_grid(3, (0.0, 1.0, 2.0))
    assert all(max(w) == 1.0 for w in grid)
    assert len(grid) == len(set(grid))
    assert (1.0, 1.0, 1.0) in grid and (0.0, 0.0, 1.0) in grid
    target = np.array([0.0, 0.5, 1.0])
    best, value = fit_weights(grid, lambda w: -float(np.sum((np.asarray(w) - target) ** 2)))
    assert best == (0.0, 0.5, 1.0) and value == pytest.approx(0.0)


def test_fuse_curves_matches_weighted_standardised_sum():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=31), 5.0 * rng.normal(size=31) + 3.0
    np.testing.assert_allclose(fuse_curves([a, b], (1.0, 0.5)), standardise(a) + 0.5 * standardise(b))
    # a member without any score contributes nothing; none at all gives NaN
    np.testing.assert_allclose(fuse_curves([a, np.full(31, np.nan)], (1.0, 1.0)), standardise(a))
    assert np.isnan(fuse_curves([np.full(31, np.nan)] * 2, (1.0, 1.0))).all()


def test_centred_pool_uses_edge_windows_without_bias():
    # 6 windows with their own levels; the true peak at shift index 3; edge windows miss shifts
    k, peak = 7, 3
    base = -np.abs(np.arange(k) - peak).astype(float)
    ws = np.stack([base + level for level in (0.0, 10.0, -5.0, 3.0, 8.0, -2.0)])
    ws[1, :2] = np.nan   # misses the first shifts, high level
    ws[4, 5:] = np.nan   # misses the last shifts
    pooled = centred_pool(ws)
    assert int(np.argmax(pooled)) == peak
    np.testing.assert_allclose(pooled - pooled.mean(), base - base.mean(), atol=1.5)
    # plain nanmean is pulled by the high-level window where the others are missing too
    assert np.isnan(centred_pool(np.full((2, k), np.nan))).all()
    with pytest.raises(ValueError):
        centred_pool(np.zeros(3))


def test_centred_pool_is_not_pulled_by_edge_windows_that_see_only_far_shifts():
    # the true curve peaks at index 7 of 15; many edge windows see only the first 4 shifts, where
    # the curve rises: centring each on its own mean would make those far shifts look good
    k, peak = 15, 7
    base = -np.abs(np.arange(k) - peak).astype(float)
    full = np.stack([base + lvl for lvl in (0.0, 1.0, -1.0)])
    edge = np.full((6, k), np.nan)
    edge[:, :4] = base[:4] + 5.0
    pooled = centred_pool(np.concatenate([full, edge]))
    assert int(np.argmax(pooled)) == peak
    np.testing.assert_allclose(pooled - pooled.mean(), base - base.mean(), atol=0.05)
