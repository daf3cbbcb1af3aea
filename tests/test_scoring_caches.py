"""The array-backed memos of models.scoring (models.score_cache): audio embeddings by row
(RowMemo) and scalar pair outputs by int64 key (cached_scalars), which replaced per-entry dicts
for speed, and which windows may be cached by their first frame id (root_windows)."""

from __future__ import annotations

import numpy as np
import torch

from avsync.models import score_cache
from avsync.models.score_cache import RowMemo, cached_scalars, root_windows


def test_row_memo_grows_both_ways_and_returns_what_was_put():
    memo = RowMemo()
    rows = np.array([10, 12, 11], np.int64)
    np.testing.assert_array_equal(memo.missing(rows), rows)
    memo.put(rows, torch.tensor([[10.0], [12.0], [11.0]]))
    np.testing.assert_array_equal(memo.missing(np.array([9, 10, 11, 12, 13])), [9, 13])
    memo.put(np.array([3, 20], np.int64), torch.tensor([[3.0], [20.0]]))  # below and above the span
    assert len(memo) == 5
    got = memo.get(np.array([20, 3, 10, 11, 12], np.int64))
    np.testing.assert_array_equal(got[:, 0].numpy(), [20, 3, 10, 11, 12])
    np.testing.assert_array_equal(memo.missing(np.array([4, 15])), [4, 15])  # gaps stay missing
    memo.clear()
    assert len(memo) == 0 and len(memo.missing(np.array([10]))) == 1


def test_cached_scalars_hit_miss_and_cap(monkeypatch):
    calls = []

    def compute(idx):
        calls.append(list(idx))
        return [float(k) for k in keys[idx]]

    cache: dict = {("v", 1): "tower entry"}
    keys = np.array([(5 << 32) | 7, (1 << 32) | 2, (3 << 32) | 9], np.int64)
    out = cached_scalars(keys, np.array([True, True, False]), cache, compute)
    np.testing.assert_array_equal(out, keys.astype(np.float64))
    assert calls == [[0, 1, 2]]
    out = cached_scalars(keys, np.array([True, True, False]), cache, compute)
    assert calls[-1] == [2]  # the two cacheable ones were kept; the third never is
    np.testing.assert_array_equal(out, keys.astype(np.float64))
    # the cap counts the cache's other entries: room for one more scalar only
    monkeypatch.setattr(score_cache, "OUT_CACHE_MAX_ENTRIES", 4)
    more = np.array([(8 << 32) | 1, (2 << 32) | 1], np.int64)
    keys = more
    cached_scalars(more, np.array([True, True]), cache, compute)
    assert len(cache[score_cache.SCALARS][0]) == 3
    assert np.all(np.diff(cache[score_cache.SCALARS][0]) > 0)  # kept sorted


def test_root_windows_of_lip_flow_need_their_track_predecessor():
    """A lip-flow window's first frame carries the motion from the frame before it: a window
    right after a roll's seam, or at the start of a cut, is not the track's own window."""
    ids = np.array([7, 8, 9, 0, 1, 2, 3, 4, 5, 6])  # the track rolled: seam between 9 and 0
    starts = np.array([0, 1, 3, 4])
    np.testing.assert_array_equal(root_windows(ids, starts, 3, "mouth"), [True, False, True, True])
    np.testing.assert_array_equal(root_windows(ids, starts, 3, "flow"), [False, False, False, True])
    cut = np.arange(60, 70)  # a drift window's frames
    np.testing.assert_array_equal(root_windows(cut, np.array([0, 1]), 5, "flow"), [False, True])
