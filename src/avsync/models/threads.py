"""How many torch threads the scoring of a track uses, and copies of a method for other threads."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

SCORING_THREADS: int = 1
"""Torch intra-op threads while a neural method scores a track (at most; never raised). Its ops
are small (a track's windows, a few hundred at a time) and a second thread mostly waits for the
first: on the 2-core machine, shared (load ~11), the default method scored a 60 s track in
11-12 s wall / 4.4 s CPU on 1 thread against 85-134 s wall / 31-48 s CPU on 2, with the same
offset and confidence (docs/BENCHMARKS.md "Speed v2")."""


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """At most ``n`` torch intra-op threads inside the block (the count is restored after).
    Nothing to do when torch is not loaded (the classical methods never import it: ~0.75 s)."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    if n >= before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def thread_copy(method: Any) -> Any | None:
    """A copy of ``method`` that may score another track on another thread at the same time as
    ``method`` (the same weights, caches of its own), or None when the method does not say it
    can be copied so (``thread_copy()`` method: neural methods, ``avcorr``, fusions of them)."""
    fn = getattr(method, "thread_copy", None)
    return fn() if callable(fn) else None


@contextmanager
def members_side_by_side(method: Any, n_threads: int) -> Iterator[None]:
    """Inside the block, a fusion's members score on up to ``n_threads`` threads at once
    (``FusedMethod.members_in_parallel``), one torch thread each: for a single track, which
    would otherwise leave the other cores idle (docs/BENCHMARKS.md "Speed v6"). Nothing for a
    method without members or for one thread. The same answers either way (tested)."""
    parallel = getattr(method, "members_in_parallel", None)
    if parallel is None or n_threads < 2:
        yield
        return
    with torch_threads(SCORING_THREADS), parallel(n_threads):
        yield
