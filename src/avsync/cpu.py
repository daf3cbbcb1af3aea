"""How many threads this process may use for one analysis (face front end, fused scoring)."""

from __future__ import annotations

import os

THREADS_ENV: str = "AVSYNC_THREADS"
"""Environment variable: threads one analysis may use (1 = the sequential paths)."""


def usable_threads() -> int:
    """``AVSYNC_THREADS`` if set, else ``OMP_NUM_THREADS`` if set (batch workers set 1: their
    parallelism is across files), else the CPU count this process may run on."""
    for name in (THREADS_ENV, "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value:
            try:
                return max(1, int(value))
            except ValueError:
                continue
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def allowed_cores() -> list[int]:
    """The CPU numbers this thread may run on, sorted (Linux); [] where that cannot be read."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return []
