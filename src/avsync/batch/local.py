"""``--engine local``: a pool of worker processes on this machine (nothing extra to install).

Each process is spawned (no fork of a driver holding threads), builds the sync model once in its
initializer and then measures one input per task; the driver alone writes the results. A worker
that dies (a crash in native code, the OOM killer) breaks the pool: the pool is restarted and the
inputs that were in flight are tried again, up to ``max_attempts`` times, then reported as errors.
:meth:`LocalEngine.start` spawns the workers (and loads their models) while the driver is still
listing the inputs; :meth:`LocalEngine.run` then uses that pool.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from avsync.batch.inputs import BatchInput
from avsync.batch.worker import WorkerConfig, init_worker, process

MAX_ATTEMPTS: int = 3
"""Tries per input when its worker process dies (a clean failure is reported at once)."""

IN_FLIGHT_PER_WORKER: int = 2
"""Tasks queued per worker, so a worker never waits for the driver between inputs."""


def _die_with_parent() -> None:
    """Linux: have the kernel kill this worker when the driver dies (kill -9 leaves no orphan)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _initializer(config: WorkerConfig) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    _die_with_parent()
    init_worker(config)


def _pid() -> int:
    return os.getpid()


def _terminate(pool: ProcessPoolExecutor) -> None:
    """Kill the pool's workers (their inputs are simply not written: --resume redoes them)."""
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        proc.terminate()


def lost_row(item: BatchInput, attempts: int, reason: str) -> dict:
    return {"path": item.path, "input_id": item.input_id,
            "error": f"failed {attempts} time(s) without a result ({reason})"}


class LocalEngine:
    """``run(items)`` yields ``(item, row)`` as each input finishes, in completion order."""

    name = "local"

    def __init__(self, config: WorkerConfig, workers: int = 1, max_attempts: int = MAX_ATTEMPTS) -> None:
        self.config = config
        self.workers = max(1, workers)
        self.max_attempts = max_attempts
        self.restarts = 0
        """Pools restarted after a worker died."""
        self._pool: ProcessPoolExecutor | None = None

    def _new_pool(self, now: int | None = None) -> ProcessPoolExecutor:
        """A pool of up to ``workers`` processes, ``now`` of them (default all) spawned at once
        (each runs the initializer); a spawn pool starts the others when tasks need them."""
        pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_initializer, initargs=(self.config,))
        for _ in range(min(self.workers, self.workers if now is None else now)):
            pool.submit(_pid)
        return pool

    def start(self, max_inputs: int | None = None) -> None:
        """Spawn the workers now (model loading included) so they are ready when run() begins;
        max_inputs: no more of them than that (when the caller knows the batch is that small)."""
        if self._pool is None:
            self._pool = self._new_pool(max_inputs)

    def close(self) -> None:
        """Stop the workers of a pool that run() did not use (nothing to do after run())."""
        if self._pool is not None:
            _terminate(self._pool)
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def run(self, items: list[BatchInput]) -> Iterator[tuple[BatchInput, dict]]:
        """Measure ``items``, handed out in the given order; (item, row) in completion order."""
        pending: deque[BatchInput] = deque(items)
        attempts: Counter[str] = Counter()
        while pending:
            pool, self._pool = self._pool or self._new_pool(), None
            inflight: dict[Future, BatchInput] = {}
            try:
                broken = False
                while (pending or inflight) and not broken:
                    while pending and len(inflight) < IN_FLIGHT_PER_WORKER * self.workers:
                        item = pending.popleft()
                        inflight[pool.submit(process, item, self.config)] = item
                    done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                    for fut in done:
                        item = inflight.pop(fut)
                        try:
                            row = fut.result()
                        except BrokenProcessPool:
                            broken = True
                            inflight[fut] = item  # re-queued below with the others
                            continue
                        yield item, row
                if broken:
                    self.restarts += 1
                    for fut, item in inflight.items():
                        if fut.done() and not fut.cancelled() and fut.exception() is None:
                            yield item, fut.result()
                            continue
                        attempts[item.input_id] += 1
                        if attempts[item.input_id] >= self.max_attempts:
                            yield item, lost_row(item, attempts[item.input_id], "process pool broken")
                        else:
                            pending.appendleft(item)
                    inflight.clear()
            finally:
                interrupted = bool(pending or inflight)
                if interrupted:  # Ctrl-C, the consumer stopped: stop now
                    _terminate(pool)
                # finished: wait for the workers to exit, so that their cores are free for the
                # next pool when this one returns (a lingering worker held its core's lock)
                pool.shutdown(wait=not interrupted, cancel_futures=True)
