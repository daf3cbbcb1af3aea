"""Run the CLI on hostile files, each in its own process with a time limit, and classify it.

Outcomes (:data:`OUTCOMES`):

* ``result``: exit 0 and the expected output (``detect --json``: one JSON result per line;
  ``fix``: the ``wrote ...`` line and the output file present);
* ``error``: exit 1 with exactly one error message (``error: ...`` on stderr, or a JSON
  ``{"error": ...}`` line for ``detect --json``) and, for ``fix``, no output or temp file left;
* failures: ``unexpected`` (one line, but from the CLI's catch-all for exceptions that are
  not an ``AvsyncError``: a bug that the library should have reported itself), ``traceback``
  (a Python traceback anywhere in the output), ``crash`` (killed by a signal: segfault, abort,
  OOM), ``hang`` (killed at the CPU-time or the wall-clock limit),
  ``leftover`` (``fix`` failed but left its output or a temp file) and ``malformed`` (any other
  exit: several error lines, no JSON, a nonzero code without a message, ...).

Two process modes: ``exec`` starts a fresh interpreter per file (``python -m avsync.cli``,
exactly what a user runs); ``fork`` forks a child of a parent that has already imported the
CLI, which saves the ~1.5 s of imports per file. A fork child is still its own process (a
crash or a hang kills only it) and runs the same ``typer`` entry point; what it cannot catch is
a failure at import time, which the ``exec`` cases cover.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

OUTCOMES = ("result", "error", "unexpected", "traceback", "crash", "hang", "leftover", "malformed")
FAILURES = ("unexpected", "traceback", "crash", "hang", "leftover", "malformed")
MEMORY_LIMIT_BYTES = 12 * 2**30  # address space per child: an absurd allocation fails, not the box
CPU_LIMIT_S = 60  # CPU seconds per child: a busy loop dies of SIGXCPU whatever the machine's load
_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        "TF_CPP_MIN_LOG_LEVEL": "3", "GLOG_minloglevel": "2", "COLUMNS": "200"}


@dataclass
class Case:
    """One CLI run: ``argv`` after ``avsync``; ``out`` is the file ``fix`` writes (else None)."""

    argv: list[str]
    container: str = ""
    mutator: str = ""
    seed: int = 0
    out: Path | None = None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class Outcome:
    case: Case
    kind: str
    rc: int
    seconds: float  # wall clock
    cpu_s: float  # user + system time of the child
    detail: str  # the error / last output line (one line, shortened)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:200] if lines else ""


def classify(case: Case, rc: int | None, stdout: str, stderr: str) -> tuple[str, str]:
    """(outcome, detail) for a finished run; ``rc`` None means it was killed at the time limit,
    a negative ``rc`` a death by signal ``-rc``."""
    text = stdout + "\n" + stderr
    if rc is None:
        return "hang", "wall-clock limit: " + _last_line(stderr)
    if rc == -signal.SIGXCPU:  # RLIMIT_CPU
        return "hang", "CPU time limit: " + _last_line(stderr)
    if rc < 0:
        return "crash", f"signal {signal.Signals(-rc).name}: {_last_line(stderr)}"
    if "Traceback" in text:
        return "traceback", _last_line(stderr)
    leftovers = _leftovers(case)
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    records = []
    for ln in stdout.splitlines():
        try:
            records.append(json.loads(ln))
        except ValueError:
            pass
    errors += [r["error"] for r in records if isinstance(r, dict) and "error" in r]
    if rc == 0:
        if case.argv[0] == "fix":
            ok = stdout.startswith("wrote ") and case.out is not None and case.out.is_file()
        else:
            ok = bool(records) and all(isinstance(r, dict) and "offset_ms" in r for r in records)
        return ("result" if ok else "malformed"), _last_line(stdout)
    if rc == 1 and len(errors) == 1:
        if leftovers:
            return "leftover", f"left {leftovers[0].name}: {errors[0][:160]}"
        kind = "unexpected" if "unexpected failure" in errors[0] else "error"
        return kind, errors[0][:200]
    return "malformed", f"rc {rc}, {len(errors)} error lines: {_last_line(text)}"


def _leftovers(case: Case) -> list[Path]:
    if case.out is None:
        return []
    found = [case.out] if case.out.exists() else []
    return found + sorted(case.out.parent.glob(f".{case.out.stem}.avsync-tmp*"))


def _limit_child() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_LIMIT_S, CPU_LIMIT_S + 5))


class _Job:
    def __init__(self, case: Case, mode: str, workdir: Path, python: str) -> None:
        self.case, self.start, self.cpu_s = case, time.monotonic(), 0.0
        self.out_path, self.err_path = workdir / "stdout", workdir / "stderr"
        fo, fe = open(self.out_path, "wb"), open(self.err_path, "wb")  # noqa: SIM115
        env = {**os.environ, **_ENV}
        if mode == "exec":
            self.proc = subprocess.Popen([python, "-m", "avsync.cli", *case.argv], stdin=subprocess.DEVNULL,
                                         stdout=fo, stderr=fe, env=env, preexec_fn=_limit_child)
            self.pid = self.proc.pid
        else:
            sys.stdout.flush()
            sys.stderr.flush()
            self.proc = None
            self.pid = os.fork()
            if self.pid == 0:  # the child never returns
                _child(case.argv, fo.fileno(), fe.fileno())
        fo.close()
        fe.close()

    def poll(self, block: bool = False) -> int | None:
        """Exit code (negative: signal) when finished, else None; sets ``cpu_s``."""
        pid, status, usage = os.wait4(self.pid, 0 if block else os.WNOHANG)
        if pid == 0:
            return None
        self.cpu_s = usage.ru_utime + usage.ru_stime
        if self.proc is not None:
            self.proc.returncode = -1  # reaped here; keep Popen from waiting again
        return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        self.poll(block=True)


def _child(argv: list[str], fd_out: int, fd_err: int) -> None:
    code = 1
    try:
        os.dup2(fd_out, 1)
        os.dup2(fd_err, 2)
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 (pytest may have replaced them)
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
        os.environ.update(_ENV)
        if "torch" in sys.modules:  # a parent that ran torch ops on 2+ OpenMP threads: the child's
            sys.modules["torch"].set_num_threads(1)  # first such op would hang (libgomp after fork)
        _limit_child()
        from avsync.cli import app

        app(argv, prog_name="avsync")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - what an uncaught exception would print
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


FORK_UNSAFE_MODULES: tuple[str, ...] = ("ray", "grpc")
"""A parent that has loaded these cannot be forked safely (their background threads hold locks):
after the Ray tests in one pytest process, fork children crashed with SIGSEGV (CI) or hung.
``fork`` mode falls back to ``exec`` in such a parent."""


def fork_is_safe() -> bool:
    """False when this process has loaded a module whose threads make ``fork`` unsafe."""
    return not any(name in sys.modules for name in FORK_UNSAFE_MODULES)


def prefork() -> None:
    """Import the CLI and its heavy dependencies once, before ``fork`` mode forks children."""
    import importlib

    for name in ("avsync.cli", "avsync.inference", "avsync.models.methods", "avsync.models.fusion",
                 "avsync.models.trained", "mediapipe"):
        try:
            importlib.import_module(name)
        except ImportError:  # an optional dependency: the child imports (and reports) it itself
            pass


def run_cases(cases: list[Case], *, mode: str = "exec", workers: int = 2, timeout_s: float = 600.0,
              python: str = sys.executable,
              on_done: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Run every case (``workers`` at a time) and classify it.

    A child is killed after :data:`CPU_LIMIT_S` s of CPU time (RLIMIT_CPU, which does not depend
    on how busy the machine is) or ``timeout_s`` s of wall-clock time (a hang without CPU use).
    """
    if mode not in ("exec", "fork"):
        raise ValueError(f"mode must be exec or fork, got {mode!r}")
    if mode == "fork" and not fork_is_safe():
        mode = "exec"
    if mode == "fork":
        prefork()
    results: list[Outcome] = []
    pending, running = list(cases), []
    with tempfile.TemporaryDirectory(prefix="avsync-fuzz-") as tmp:
        n = 0
        while pending or running:
            while pending and len(running) < workers:
                n += 1
                (Path(tmp) / str(n)).mkdir()
                running.append(_Job(pending.pop(0), mode, Path(tmp) / str(n), python))
            time.sleep(0.05)
            for job in list(running):
                rc = job.poll()
                elapsed = time.monotonic() - job.start
                if rc is None and elapsed < timeout_s:
                    continue
                if rc is None:
                    job.kill()
                running.remove(job)
                out = job.out_path.read_text(errors="replace")
                err = job.err_path.read_text(errors="replace")
                kind, detail = classify(job.case, rc, out, err)
                outcome = Outcome(job.case, kind, -999 if rc is None else rc, elapsed, job.cpu_s, detail)
                results.append(outcome)
                if on_done is not None:
                    on_done(outcome)
    return results
