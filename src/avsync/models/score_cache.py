"""The memos of ``avsync.models.scoring``: what a track's scoring keeps between its many calls
(the track's curve, its null rolls and drift windows ask for the same windows and audio rows
again and again), as arrays looked up in bulk.

* :class:`RowMemo`: (D,) audio embeddings by log-mel row;
* :func:`cached_scalars` / :func:`cached_outputs`: model outputs by (first frame id, audio row);
* :func:`root_windows`: which windows may be cached by their first frame id at all.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


class RowMemo:
    """(D,) embeddings by audio row, held for a contiguous span of rows that grows as asked:
    looked up and stored as arrays (a track's null rolls and drift windows ask for thousands of
    rows per call). ``clear`` forgets them (segments.drop_audio_caches)."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.first = 0
        self.have = np.zeros(0, bool)
        self.emb: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.have.sum())

    def missing(self, rows: np.ndarray) -> np.ndarray:
        """The rows of ``rows`` (int64) not held."""
        at = rows - self.first
        inside = (at >= 0) & (at < len(self.have))
        held = np.zeros(len(rows), bool)
        held[inside] = self.have[at[inside]]
        return rows[~held]

    def put(self, rows: np.ndarray, emb: torch.Tensor) -> None:
        if len(rows) == 0:
            return
        lo = int(rows.min()) if self.emb is None else min(self.first, int(rows.min()))
        hi = (int(rows.max()) + 1 if self.emb is None
              else max(self.first + len(self.have), int(rows.max()) + 1))
        if self.emb is None or lo < self.first or hi > self.first + len(self.have):
            grown = torch.zeros(hi - lo, emb.shape[1], dtype=emb.dtype)
            have = np.zeros(hi - lo, bool)
            if self.emb is not None:
                grown[self.first - lo: self.first - lo + len(self.have)] = self.emb
                have[self.first - lo: self.first - lo + len(self.have)] = self.have
            self.first, self.have, self.emb = lo, have, grown
        self.emb[torch.from_numpy(rows - self.first)] = emb
        self.have[rows - self.first] = True

    def copy(self) -> RowMemo:
        out = RowMemo()
        out.first, out.have = self.first, self.have.copy()
        out.emb = None if self.emb is None else self.emb.clone()
        return out

    def get(self, rows: np.ndarray) -> torch.Tensor:
        """(N, D) embeddings of held rows."""
        return self.emb[torch.from_numpy(rows - self.first)]


def root_windows(ids: np.ndarray, starts: np.ndarray, frames: int, kind: str | None) -> np.ndarray:
    """(W,) bool: the windows at ``starts`` whose content is their track's own, so that their
    model outputs may be cached by first frame id: consecutive ids, and for lip flow (``kind``
    "flow": a frame's value is the motion from the frame before it) a first frame that follows
    its track predecessor too. A roll's window that starts just after the seam holds the flow
    from the other side of the seam, and a window cut at a frame holds none: before this
    check, such windows shared a cache entry with the track's own window at that id, and a
    drift window's score depended on which input had been scored first."""
    ok = ids[starts + frames - 1] - ids[starts] == frames - 1
    if kind == "flow":
        follows = np.zeros(len(starts), bool)
        inner = starts >= 1
        follows[inner] = ids[starts[inner] - 1] == ids[starts[inner]] - 1
        ok &= follows
    return ok


OUT_CACHE_MAX_ENTRIES: int = 250_000
"""Cap on the entries of one track's output cache (~45 MB; a 1-minute track with its null rolls
needs ~80 000). Past it, outputs are recomputed (from cached tower features where the model has
them) rather than memory growing with the duration (docs/BENCHMARKS.md "Long inputs")."""


def cached_outputs(keys: list[tuple[int, int]], cacheable: np.ndarray, cache: dict,
                    compute: Any) -> list[Any]:
    """Outputs for ``keys`` through ``cache``; ``compute(indices) -> list`` fills the misses."""
    out: list[Any] = [cache.get(k) if c else None for k, c in zip(keys, cacheable, strict=True)]
    todo = [i for i, o in enumerate(out) if o is None]
    for i, o in zip(todo, compute(np.array(todo, np.int64)), strict=True):
        out[i] = o
        if cacheable[i] and len(cache) < OUT_CACHE_MAX_ENTRIES:
            cache[keys[i]] = o
    return out


SCALARS = "scalars"
"""The output cache's entry holding scalar outputs: (sorted int64 keys, float64 values)."""


def cached_scalars(keys: np.ndarray, cacheable: np.ndarray, cache: dict, compute: Any) -> np.ndarray:
    """:func:`cached_outputs` for scalar outputs under int64 keys, looked up and stored in bulk
    (sorted arrays in ``cache[SCALARS]``): (N,) float64. The entries count against
    OUT_CACHE_MAX_ENTRIES with the cache's other entries; the first misses in order are kept."""
    known, values = cache.get(SCALARS, (np.empty(0, np.int64), np.empty(0)))
    out = np.full(len(keys), np.nan)
    hit = np.zeros(len(keys), bool)
    if len(known):
        pos = np.minimum(np.searchsorted(known, keys), len(known) - 1)
        hit = cacheable & (known[pos] == keys)
        out[hit] = values[pos[hit]]
    todo = np.flatnonzero(~hit)
    if len(todo):
        out[todo] = np.asarray(compute(todo), np.float64)
        room = OUT_CACHE_MAX_ENTRIES - (len(cache) - (SCALARS in cache)) - len(known)
        new = todo[cacheable[todo]][:max(0, room)]
        if len(new):
            order = np.argsort(keys[new], kind="stable")
            k_new, v_new = keys[new][order], out[new][order]
            at = np.searchsorted(known, k_new)
            cache[SCALARS] = (np.insert(known, at, k_new), np.insert(values, at, v_new))
    return out
