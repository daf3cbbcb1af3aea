"""Compact append-only storage for per-frame arrays of a track (mouth crops, lip points).

A Python list of small arrays costs ~110 bytes of object overhead per row and, once stacked for
a model, exists twice. :class:`RowStore` keeps rows in preallocated blocks and consolidates them
into one (T, ...) array in place (:meth:`RowStore.array`), so a long track's crops exist once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

BLOCK_ROWS: int = 1024
"""Most rows per preallocated block (48x48 uint8 crops: 2.4 MB a block)."""
FIRST_BLOCK_ROWS: int = 32
"""Rows of a store's first block; each next block doubles the size, up to BLOCK_ROWS."""


class RowStore:
    """Rows of one ``shape`` and ``dtype``; behaves like a list for ``len``, ``append``,
    integer indexing and iteration (so ``np.stack(store)`` works as on a list)."""

    def __init__(self, shape: Sequence[int], dtype: np.dtype | type, block_rows: int = BLOCK_ROWS):
        self.shape, self.dtype, self.block_rows = tuple(shape), np.dtype(dtype), block_rows
        self._full: list[np.ndarray] = []  # filled blocks (any lengths)
        self._cur: np.ndarray | None = None
        self._n_cur = 0
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def append(self, row: np.ndarray) -> None:
        if self._cur is None or self._n_cur == len(self._cur):
            if self._cur is not None:
                self._full.append(self._cur)
            rows = min(self.block_rows, max(FIRST_BLOCK_ROWS, self._n))  # short tracks stay small
            self._cur, self._n_cur = np.empty((rows, *self.shape), self.dtype), 0
        self._cur[self._n_cur] = row
        self._n_cur += 1
        self._n += 1

    def __getitem__(self, i: int) -> np.ndarray:
        i = range(self._n)[i]  # negative indices; IndexError past the end
        in_full = self._n - self._n_cur
        if i >= in_full:
            return self._cur[i - in_full]
        for block in self._full:
            if i < len(block):
                return block[i]
            i -= len(block)
        raise IndexError(i)  # pragma: no cover  (unreachable)

    def __iter__(self) -> Iterator[np.ndarray]:
        for block in self._full:
            yield from block
        if self._cur is not None:
            yield from self._cur[: self._n_cur]

    def array(self) -> np.ndarray:
        """All rows as one (T, *shape) array, which then replaces the blocks (no second copy)."""
        parts = self._full + ([self._cur[: self._n_cur]] if self._n_cur else [])
        if len(parts) == 1 and len(parts[0]) == self._n and parts[0].base is None:
            arr = parts[0]
        elif parts:
            arr = np.concatenate(parts)
        else:
            arr = np.empty((0, *self.shape), self.dtype)
        self._full, self._cur, self._n_cur = ([arr] if len(arr) else []), None, 0
        return arr


def rows_array(rows: RowStore | Sequence[np.ndarray]) -> np.ndarray:
    """(T, ...) array of per-frame rows: a RowStore consolidated in place, a list stacked."""
    return rows.array() if isinstance(rows, RowStore) else np.stack(rows)
