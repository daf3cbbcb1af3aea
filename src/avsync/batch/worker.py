"""The per-input work of a batch, the same in every engine: detect, optionally fix, one JSON row.

A worker process (a pool process or a Ray actor) calls :func:`init_worker` once, so the sync
model is built once per worker and reused for every input, then :func:`process` per input.
The row is ``SyncResult.to_dict()`` plus ``input_id`` (and ``timings_s["cpu"]``, the worker
process's CPU seconds for the input, all threads) (and ``fixed``/``fix_error`` with
``--fix-dir``), or ``{"path", "input_id", "error"}`` when the input fails: a failure is data,
never an exception out of :func:`process`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from avsync.batch.inputs import BatchInput


@dataclass(frozen=True)
class WorkerConfig:
    """What every worker needs: the method (None: the default one, resolved in the worker so the
    driver need not import the models), the optional fix folder, and the threads per worker."""

    method: str | None
    fix_dir: str | None = None
    threads: int = 1
    pin: bool = True
    """Pin each one-thread worker to a core of its own (:func:`claim_core`)."""
    fast: bool = False
    """``detect --fast``: landmarks on every other frame (a measured accuracy cost, BENCHMARKS)."""


THREAD_ENV = ("AVSYNC_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
"""Thread-count variables a worker forces to ``WorkerConfig.threads``, whatever the user set:
``AVSYNC_THREADS`` is the face analysis's own knob (a pipelined analysis on several threads when
allowed), the others are read by native libraries that start after ``init_worker``; torch's own
counts are set explicitly."""

PIN_ENV: str = "AVSYNC_PIN"
"""Environment variable: ``0`` never pins workers to cores (``batch --no-pin`` sets it too)."""

_MODELS: dict[str | None, object] = {}
_CORE_LOCK: list = []  # the open lock file of the claimed core, held for the process's life


def core_lock_dir() -> Path:
    """Where workers of this user on this machine claim cores (one lock file per core)."""
    import tempfile

    return Path(tempfile.gettempdir()) / f"avsync-cores-{os.getuid()}"


CLAIM_WAIT_S: float = 2.0
"""How long a starting worker waits for a core when every core is held: a worker of the previous
pool may still be exiting (its lock goes with it). After that it runs unpinned."""


def pin_all_threads(core: int) -> None:
    """Confine every thread of this process to ``core``, not only the calling one: Linux's
    ``sched_setaffinity(0)`` pins the calling thread, and threads that exist already keep their
    cores (a Ray actor has ~20 by the time its ``__init__`` runs: gRPC pollers, the core worker's
    event loops). Threads started later inherit their creator's affinity. Raises OSError when the
    calling thread cannot be pinned; a thread that ends meanwhile is skipped."""
    os.sched_setaffinity(0, {core})
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:  # no /proc: the calling thread only
        return
    for tid in tids:
        try:
            os.sched_setaffinity(tid, {core})
        except OSError:
            pass


def claim_core() -> int | None:
    """Pin this process to one allowed core that no other avsync worker on this machine holds.

    Why: a one-thread worker still hands work between its own threads (the decoder's, MediaPipe's
    graph); unpinned, the kernel runs those hand-offs on whichever core, and with one worker per
    core both cores idle ~9 % of the time while each waits for the other's core
    (docs/BENCHMARKS.md, issue 13). The claim is an exclusive ``flock`` on
    ``core_lock_dir()/core{N}.lock``, which the kernel releases when the process dies, however it
    dies: a restarted pool or actor claims the freed core again, and a second batch on the same
    machine takes the remaining cores, or none. When every core is held it waits up to
    :data:`CLAIM_WAIT_S` for one to be freed (a worker of the previous pool still exiting, which
    otherwise left one of the next pool's two workers unpinned). Returns the core, or None (no
    core free, pinning unsupported, or ``AVSYNC_PIN=0``): the process then runs unpinned.
    """
    if os.environ.get(PIN_ENV, "1").strip() == "0" or not hasattr(os, "sched_setaffinity"):
        return None
    import fcntl

    try:
        folder = core_lock_dir()
        folder.mkdir(exist_ok=True)
        allowed = sorted(os.sched_getaffinity(0))
    except OSError:
        return None
    if len(allowed) < 2:
        return None
    deadline = time.monotonic() + CLAIM_WAIT_S
    while True:
        for core in allowed:
            try:
                fh = open(folder / f"core{core}.lock", "a")  # noqa: SIM115  (held while we live)
            except OSError:
                return None
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                pin_all_threads(core)
            except OSError:
                fh.close()
                continue
            _CORE_LOCK.append(fh)
            return core
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


MALLOC_KEEP_BYTES: int = 64 << 20
"""glibc malloc settings of a worker (:func:`keep_freed_memory`): arrays up to this size come from
the heap, and this much freed memory is kept at its top for the next input."""


def keep_freed_memory() -> bool:
    """glibc: serve arrays up to MALLOC_KEEP_BYTES from the heap and keep freed memory for reuse.

    By default glibc maps every block above its (adaptive, <= 32 MB) threshold afresh and unmaps
    it when freed, so each input's frames, crops and features arrive as new pages the kernel
    must fault in and zero: ~25,000 page faults per 3-second GRID clip. With these settings a
    worker, which allocates the same sizes input after input, reuses its memory: ~1,000 faults
    (``benchmarks/frontend_costs.py``; the system CPU saved was within this machine's noise).
    Cost: a worker may keep up to 4 x MALLOC_KEEP_BYTES (256 MB) of freed heap instead of
    returning it (long inputs still trim after each segment).
    False where the C library has no ``mallopt`` (not glibc)."""
    import ctypes

    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3  # glibc's malloc.h
    return all(mallopt(k, v) == 1 for k, v in ((m_mmap_threshold, MALLOC_KEEP_BYTES),
                                                (m_trim_threshold, 4 * MALLOC_KEEP_BYTES),
                                                (m_top_pad, MALLOC_KEEP_BYTES)))


def init_worker(config: WorkerConfig) -> None:
    """Once per worker: ``config.threads`` (1) intra-op thread, whatever the environment says (the
    parallelism is across inputs: one worker per core), a core of its own when it has one thread
    and ``config.pin`` (:func:`claim_core`), memory kept for reuse (:func:`keep_freed_memory`),
    then build the model."""
    for name in THREAD_ENV:
        os.environ[name] = str(config.threads)
    if config.pin and config.threads == 1:
        claim_core()
    keep_freed_memory()
    import torch

    torch.set_num_threads(config.threads)
    try:
        torch.set_num_interop_threads(config.threads)
    except RuntimeError:  # the inter-op pool is already running (torch used before): leave it
        pass
    model_for(config.method)


def check_method(method: str | None) -> None:
    """Raise AvsyncError for a method no worker could build (unknown name, missing checkpoint),
    so that a typo fails once in the driver instead of killing every worker at start-up."""
    if method is None:
        return
    from avsync.errors import AvsyncError
    from avsync.models.registry import available_models

    if method.endswith(".safetensors"):
        if not Path(method).is_file():
            raise AvsyncError(f"checkpoint not found: {method}")
        return
    models = {m.name: m for m in available_models()}
    if method not in models:
        raise AvsyncError(f"unknown method {method!r}; available: {', '.join(sorted(models))}")
    if models[method].kind == "peer":
        raise AvsyncError(f"method {method} needs --weights, which batch does not take")


def model_for(method: str | None) -> object:
    """The worker's cached instance of ``method`` (built on first use; None: the default)."""
    if method not in _MODELS:
        from avsync.models.registry import DEFAULT_METHOD, create_model

        _MODELS[method] = create_model(method or DEFAULT_METHOD)
    return _MODELS[method]


def fixed_path(fix_dir: str | Path, item: BatchInput) -> Path:
    """Where ``--fix-dir`` writes the corrected copy: ``DIR/{stem}.{input_id[:8]}.synced{suffix}``
    (the id keeps same-named files of different folders apart)."""
    p = Path(item.path)
    return Path(fix_dir) / f"{p.stem}.{item.input_id[:8]}.synced{p.suffix}"


def needs_fix(row: dict) -> bool:
    """Reliable, and more than the in-sync tolerance (1 frame) off."""
    from avsync.inference import IN_SYNC_TOLERANCE_FRAMES

    return bool(row.get("reliable")) and abs(float(row.get("offset_frames", 0))) > IN_SYNC_TOLERANCE_FRAMES


def _one_line(exc: BaseException) -> str:
    from avsync.cli_util import one_sentence
    from avsync.errors import AvsyncError

    if isinstance(exc, AvsyncError):
        return one_sentence(exc)
    return f"unexpected failure ({type(exc).__name__}: {one_sentence(exc)})"


def process(item: BatchInput, config: WorkerConfig) -> dict:
    """Measure one input (and fix it when asked); never raises for a bad input."""
    from avsync.inference import detect

    cpu0 = time.process_time()
    try:
        row = detect(item.path, method=model_for(config.method), fast=config.fast).to_dict()
    except Exception as exc:  # noqa: BLE001  (one error line per input, the batch goes on)
        return {"path": item.path, "input_id": item.input_id, "error": _one_line(exc)}
    row["input_id"] = item.input_id
    if config.fix_dir is not None and needs_fix(row):
        from avsync import fix

        out = fixed_path(config.fix_dir, item)
        try:
            written, _ = fix(item.path, out, offset_ms=float(row["offset_ms"]), overwrite=True)
            row["fixed"] = str(written)
        except Exception as exc:  # noqa: BLE001
            row["fix_error"] = _one_line(exc)
    row.setdefault("timings_s", {})["cpu"] = round(time.process_time() - cpu0, 3)
    return row
