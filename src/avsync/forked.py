"""Run one function in a forked child process while the caller goes on (Linux).

Why: a fresh ``avsync detect`` with a trained method spends its first ~1.5 s on one core
(importing torch, building the model, reading the audio) before the face analysis, which then
keeps both cores busy. Threads cannot overlap the two: the import holds the GIL (tried twice,
docs/BENCHMARKS.md "Speed v7" and "Speed v8": no gain). A forked child has an interpreter of its
own, so ``inference.detect`` starts the face analysis in one at once and builds the model and
reads the audio meanwhile; the child hands back its result through a pipe (pickled: ~5 MB and
a few milliseconds for a minute of 720p). The same code on the same input: the same answer.

When (:func:`fork_wanted`): Linux with ``os.fork``, at least two usable threads
(avsync.cpu), called from the main thread, torch not yet imported (nothing of torch's or
OpenMP's thread pools is forked; a later call in the same process finds torch imported and
runs in-process), Ray not imported (its worker processes run gRPC threads), and ``AVSYNC_FORK``
not ``0``.

The child dies with the parent (``PR_SET_PDEATHSIG``) and on Ctrl-C (default SIGINT), writes
through new ``sys.stdout``/``sys.stderr`` objects (another thread of the parent, e.g. a
progress bar's, may hold the old ones' locks at the fork), reports progress at most every
``PROGRESS_EVERY_S``, and ends with ``os._exit`` (none of the parent's exit handlers run twice).
An exception in the child is raised again by :meth:`Forked.result` (the same type and message);
a child that ends without an answer (killed, crashed) gives a one-line AvsyncError.
"""

from __future__ import annotations

import os
import pickle
import signal
import struct
import sys
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

from avsync.cpu import usable_threads
from avsync.errors import AvsyncError

FORK_ENV: str = "AVSYNC_FORK"
"""Environment variable: ``0`` keeps the face analysis in the calling process."""

PROGRESS_EVERY_S: float = 0.1
"""The child sends its progress at most this often."""

_HEADER = struct.Struct("<Q")
"""Each message: its length (8 bytes), then a pickled (kind, value)."""


def fork_wanted() -> bool:
    """True when a forked child may run work beside this process (module doc)."""
    return (sys.platform.startswith("linux") and hasattr(os, "fork")
            and os.environ.get(FORK_ENV, "").strip() != "0"
            and "torch" not in sys.modules and "ray" not in sys.modules and usable_threads() >= 2
            and threading.current_thread() is threading.main_thread())


class Forked:
    """A forked child running ``fn(progress)``; ``result()`` waits for its return value.

    ``progress(n)`` in the child reaches ``on_progress(n)`` in the parent (on a reader thread).
    Use as a context manager (or call ``close``): leaving it kills a child still running."""

    def __init__(self, fn: Callable[[Callable[[int], None]], Any],
                 on_progress: Callable[[int], None] | None = None) -> None:
        read_fd, write_fd = os.pipe()
        with warnings.catch_warnings():  # Python >= 3.12 warns when threads exist
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the child: never returns
            os.close(read_fd)
            _run_child(fn, write_fd)
        os.close(write_fd)
        self.pid = pid
        self._status: int | None = None
        self._final: tuple[str, Any] | None = None
        self._on_progress = on_progress
        self._reader = threading.Thread(target=self._read, args=(read_fd,), daemon=True,
                                        name="avsync-forked-reader")
        self._reader.start()

    def _read(self, fd: int) -> None:
        try:
            with os.fdopen(fd, "rb") as pipe:
                while True:
                    head = pipe.read(_HEADER.size)
                    if len(head) < _HEADER.size:
                        return  # the child ended without its answer
                    body = pipe.read(_HEADER.unpack(head)[0])
                    kind, value = pickle.loads(body)
                    if kind != "progress":
                        self._final = (kind, value)
                        return
                    if self._on_progress is not None:
                        try:
                            self._on_progress(value)
                        except Exception:  # noqa: BLE001  (a progress display must not stop the work)
                            self._on_progress = None
        except Exception as exc:  # noqa: BLE001  (a truncated or unreadable message)
            self._final = ("error", AvsyncError(f"the face analysis process sent an unreadable "
                                                f"answer ({type(exc).__name__}: {exc})"))

    def result(self) -> Any:
        """The child's return value (waits for it), or its exception raised here."""
        self._reader.join()
        self._reap()
        if self._final is None:
            raise AvsyncError(f"the face analysis process ended without an answer "
                              f"({_describe_status(self._status)})")
        kind, value = self._final
        if kind == "error":
            raise value
        return value

    def close(self) -> None:
        """Kill the child if it still runs, reap it, and stop the reader."""
        if self._status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._reap()
        self._reader.join()

    def _reap(self) -> None:
        """Wait for the child to end (once) and keep its status."""
        if self._status is None:
            self._status = os.waitpid(self.pid, 0)[1]

    def __enter__(self) -> Forked:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _describe_status(status: int | None) -> str:
    if status is None:
        return "still running"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            return f"killed by {signal.Signals(sig).name}"
        except ValueError:
            return f"killed by signal {sig}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def _run_child(fn: Callable[[Callable[[int], None]], Any], write_fd: int) -> None:
    """The child's whole life: run ``fn``, send its answer, ``os._exit``."""
    code = 1
    try:
        parent = os.getppid()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        _die_with_parent(parent)
        sys.stdout = open(os.dup(1), "w", buffering=1, encoding="utf-8", errors="replace")  # noqa: SIM115
        sys.stderr = open(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")  # noqa: SIM115
        with os.fdopen(write_fd, "wb") as pipe:
            last, lock = [0.0], threading.Lock()

            def send(kind: str, value: Any) -> None:
                try:
                    body = pickle.dumps((kind, value), protocol=pickle.HIGHEST_PROTOCOL)
                    if kind == "error":
                        pickle.loads(body)  # an exception whose class cannot be rebuilt: say so instead
                except Exception as exc:  # noqa: BLE001  (an answer that cannot be pickled)
                    what = value if kind == "error" else exc
                    body = pickle.dumps(("error", AvsyncError(
                        f"the face analysis failed ({type(what).__name__}: {what})")))
                with lock:
                    pipe.write(_HEADER.pack(len(body)))
                    pipe.write(body)
                    pipe.flush()

            latest: list = [None, None]  # the last progress seen, the last sent

            def progress(n: int) -> None:
                latest[0] = n
                now = time.monotonic()
                if now - last[0] >= PROGRESS_EVERY_S:
                    last[0], latest[1] = now, n
                    send("progress", n)

            try:
                value = fn(progress)
            except BaseException as exc:  # noqa: BLE001  (raised again in the parent)
                send("error", exc)
            else:
                if latest[0] is not None and latest[0] != latest[1]:
                    send("progress", latest[0])  # the display ends on the last frame
                send("ok", value)
        code = 0
    finally:
        os._exit(code)


def _die_with_parent(parent: int) -> None:
    """Linux: SIGKILL this process when the parent (the thread that forked) ends."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent ended before prctl
        os._exit(1)
