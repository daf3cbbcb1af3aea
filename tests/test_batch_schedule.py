"""Batch scheduling and driver costs: longest inputs first, workers started before the listing,
grouped fsync, one thread per worker on a core of its own, a bad method refused once in the driver."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from avsync.batch import runner
from avsync.batch.inputs import BatchInput, expand_inputs, make_input
from avsync.batch.schedule import PROBE_MAX_INPUTS, cost_keys, longest_first, probe_duration_s
from avsync.batch.store import ResultStore
from avsync.errors import AvsyncError


def _item(name: str, size: int, duration: float | None = None) -> BatchInput:
    return BatchInput(f"/nowhere/{name}", name, size, {}, duration)


def test_longest_first_by_duration_then_size_scaled_by_the_known_rate():
    items = [_item("short", 1000, 2.0), _item("long", 1000, 9.0), _item("missing", -1),
             _item("big", 8000), _item("small", 500), _item("mid", 3000, 5.0)]
    # median rate of the known: 1000/2, 1000/9, 3000/5 bytes/s -> 500 B/s: big ~16 s, small ~1 s
    order = [i.input_id for i in longest_first(items, probe=False)]
    assert order == ["big", "long", "mid", "short", "small", "missing"]
    assert cost_keys([_item("a", 10), _item("b", 20)]) == [10.0, 20.0]  # no duration known: sizes
    ties = [_item(f"t{k}", 100, 3.0) for k in range(5)]
    assert longest_first(ties, probe=False) == ties  # stable


def test_probe_reads_the_header_and_never_raises(example_clip, tmp_path):
    assert probe_duration_s(str(example_clip)) == pytest.approx(3.0, abs=0.1)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video" * 10)
    assert probe_duration_s(str(junk)) is None
    assert probe_duration_s(str(tmp_path / "absent.mp4")) is None
    fifo = tmp_path / "fifo.mp4"
    os.mkfifo(fifo)
    assert probe_duration_s(str(fifo)) is None  # not opened: it would block
    items = [make_input(junk), make_input(example_clip)]
    ordered = longest_first(items)
    assert [Path(i.path).name for i in ordered] == [example_clip.name, "junk.mp4"]
    assert ordered[0].duration_s == pytest.approx(3.0, abs=0.1) and ordered[1].duration_s is None
    many = [make_input(example_clip)] * (PROBE_MAX_INPUTS + 1)
    assert all(i.duration_s is None for i in longest_first(many))  # too many: no probing


def test_manifest_duration_is_a_hint_and_goes_to_the_kept_manifest(tmp_path):
    for name in ("a.mp4", "b.mp4"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "m.tsv").write_text("path\tduration_s\na.mp4\t4.5\nb.mp4\tn/a\n")
    items = expand_inputs([tmp_path / "m.tsv"])
    assert [i.duration_s for i in items] == [4.5, None]
    rows = [{"path": items[0].path, "input_id": items[0].input_id, "reliable": True, "duration_s": 4.52}]
    from avsync.batch.keep import KeepFilter

    kept = runner.kept_rows(rows, items, KeepFilter("reliable"))
    assert kept[0]["duration_s"] == 4.52


def test_store_groups_fsyncs(tmp_path, monkeypatch):
    calls = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd)))
    out = tmp_path / "r.jsonl"
    with ResultStore(out) as store:
        for k in range(50):
            store.append({"path": f"p{k}", "input_id": str(k)})
        assert len(calls) <= 2  # not one per line (50 appends take far less than 2 s)
        monkeypatch.setattr("avsync.batch.store.FSYNC_INTERVAL_S", 0.0)
        store.append({"path": "last", "input_id": "last"})
        synced = len(calls)
        assert synced >= 1
    assert len(calls) == synced  # nothing left to sync at close
    assert len(out.read_text().splitlines()) == 51


class _FakeEngine:
    """Records the engine's life cycle against the listing; rows without media work."""

    log: list[str] = []

    def __init__(self, *args) -> None:
        self.log.clear()

    def start(self, max_inputs=None) -> None:
        self.log.append(f"start:{max_inputs}")

    def run(self, items):
        self.log.append("run:" + ",".join(Path(i.path).name for i in items))
        for i in items:
            yield i, {"path": i.path, "input_id": i.input_id, "duration_s": i.duration_s}

    def close(self) -> None:
        self.log.append("close")


def test_run_batch_starts_workers_before_listing_and_runs_longest_first(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "make_engine", lambda *a: _FakeEngine())
    listed = []
    real_expand = runner.expand_inputs
    monkeypatch.setattr(runner, "expand_inputs",
                        lambda specs: (listed.append(list(_FakeEngine.log)), real_expand(specs))[1])
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "m.jsonl").write_text("".join(json.dumps({"path": n, "duration_s": d}) + "\n"
                                              for n, d in (("a.mp4", 3), ("b.mp4", 30), ("c.mp4", 9))))
    out = tmp_path / "r.jsonl"
    summary = runner.run_batch([tmp_path / "m.jsonl"], out)
    assert listed == [["start:None"]]  # the workers were started before the inputs were listed
    assert _FakeEngine.log == ["start:None", "run:b.mp4,c.mp4,a.mp4", "close"]
    assert summary.done == 3
    again = runner.run_batch([tmp_path / "m.jsonl"], out, resume=True)  # nothing to do
    assert _FakeEngine.log == ["start:None", "close"] and again.skipped == 3
    with pytest.raises(AvsyncError, match="unknown method 'nope'"):
        runner.run_batch([tmp_path / "m.jsonl"], tmp_path / "r2.jsonl", method="nope")
    assert _FakeEngine.log == ["start:None", "close"]  # refused once, workers stopped
    assert not (tmp_path / "r2.jsonl").exists()
    with pytest.raises(AvsyncError, match="no such file"):
        runner.run_batch([tmp_path / "typo.mp4"], tmp_path / "r3.jsonl")
    assert _FakeEngine.log == ["start:None", "close"]  # a typo fails before any worker starts
    runner.run_batch([tmp_path / "a.mp4", tmp_path / "b.mp4"], tmp_path / "r4.jsonl")
    assert _FakeEngine.log[0] == "start:2"  # plain files: no more workers than inputs


def test_worker_forces_one_thread_whatever_the_environment():
    code = ("import os; from avsync.batch.worker import WorkerConfig, init_worker; "
            "init_worker(WorkerConfig('avcorr')); import torch; "
            "print(os.environ['AVSYNC_THREADS'], os.environ['OMP_NUM_THREADS'], "
            "os.environ['OPENBLAS_NUM_THREADS'], torch.get_num_threads(), torch.get_num_interop_threads())")
    env = {**os.environ, "AVSYNC_THREADS": "2", "OMP_NUM_THREADS": "4", "OPENBLAS_NUM_THREADS": "4",
           "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "1", "1", "1", "1"]


needs_two_cores = pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                                     reason="needs CPU affinity and at least two cores")


def _claim_env(tmp_path: Path) -> dict:
    """The environment of a claiming subprocess: its own lock folder, pinning on."""
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("AVSYNC_PIN", None)
    return env


def _claimer(env: dict) -> subprocess.Popen:
    """A process that claims a core, prints 'CORE AFFINITY...' and holds the claim until stdin closes."""
    code = ("import os, sys; from avsync.batch.worker import claim_core; c = claim_core(); "
            "print(c, *sorted(os.sched_getaffinity(0)), flush=True); sys.stdin.read()")
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=env)


@contextlib.contextmanager
def _every_core_held(env: dict):
    """One claiming process per allowed core -> (processes, their printed 'CORE AFFINITY...'
    lines split); those still alive at the end are let go."""
    procs = [_claimer(env) for _ in sorted(os.sched_getaffinity(0))]
    try:
        yield procs, [p.stdout.readline().split() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.communicate("", timeout=60)


@needs_two_cores
def test_workers_claim_distinct_cores_and_free_them_when_they_die(tmp_path):
    cores = sorted(os.sched_getaffinity(0))
    env = _claim_env(tmp_path)
    with _every_core_held(env) as (procs, lines):
        claimed = [int(line[0]) for line in lines]
        assert sorted(claimed) == cores  # each its own core ...
        assert all(line[1:] == [line[0]] for line in lines)  # ... and pinned to it alone
        extra = _claimer(env)  # no core left: runs unpinned
        assert extra.communicate("", timeout=120)[0].split() == ["None", *map(str, cores)]
        procs[0].kill()  # dies without cleaning up: the kernel drops its lock
        procs[0].wait(timeout=60)
        again = _claimer(env)
        assert again.communicate("", timeout=120)[0].split() == [str(claimed[0])] * 2
    off = _claimer({**env, "AVSYNC_PIN": "0"})  # --no-pin
    assert off.communicate("", timeout=120)[0].split() == ["None", *map(str, cores)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_worker_memory_is_reused_not_mapped_afresh():
    """A 40 MB array (above glibc's largest adaptive mmap threshold, 32 MB), made and freed 5 times:
    by default each is a fresh mapping (faulted in and zeroed by the kernel every time); in a
    worker that keeps its memory it comes from the heap, which does not grow after the first."""
    code = ("import ctypes, sys, numpy as np; from avsync.batch.worker import keep_freed_memory\n"
            "class M(ctypes.Structure): _fields_ = [(n, ctypes.c_size_t) for n in "
            "'arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost'.split()]\n"
            "info = ctypes.CDLL('libc.so.6').mallinfo2; info.restype = M\n"
            "ok = keep_freed_memory() if sys.argv[1] == '1' else True\n"
            "mapped, heap = [], []\n"
            "for _ in range(5):\n"
            "    a = np.ones(40 << 20, np.uint8); m = info(); mapped.append(m.hblkhd >> 20); "
            "heap.append(m.arena >> 20); del a\n"
            "print(ok, min(mapped), max(heap) - heap[0])")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    got = {}
    for keep in ("0", "1"):
        out = subprocess.run([sys.executable, "-c", code, keep], capture_output=True, text=True, env=env,
                             timeout=120)
        assert out.returncode == 0, out.stderr
        ok, mapped_mb, heap_growth_mb = out.stdout.split()
        assert ok == "True"
        got[keep] = (int(mapped_mb), int(heap_growth_mb))
    assert got["0"][0] >= 40  # default: the array is its own mapping, every time
    assert got["1"][0] < 40 and got["1"][1] == 0  # kept: from the heap, reused (no growth after the first)


@pytest.mark.skipif(not sys.platform.startswith("linux") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs Linux thread affinity and at least two cores")
def test_claimed_core_holds_every_thread_not_only_the_caller(tmp_path):
    """A Ray actor claims its core with ~20 threads already running; they must be pinned too."""
    code = ("import os, threading; from avsync.batch.worker import claim_core\n"
            "ev = threading.Event(); ids = []\n"
            "def idle(): ids.append(threading.get_native_id()); ev.wait()\n"
            "ts = [threading.Thread(target=idle) for _ in range(3)]\n"
            "[t.start() for t in ts]\n"
            "while len(ids) < 3: pass\n"
            "c = claim_core()\n"
            "later = []\n"
            "t2 = threading.Thread(target=lambda: later.append(sorted(os.sched_getaffinity(0))))\n"
            "t2.start(); t2.join()\n"
            "print(c, [sorted(os.sched_getaffinity(i)) for i in ids], later[0]); ev.set()")
    env = _claim_env(tmp_path)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    core = int(out.stdout.split()[0])
    assert out.stdout.strip() == f"{core} {[[core]] * 3} {[core]}"


@needs_two_cores
def test_a_starting_worker_waits_briefly_for_a_core_being_freed(tmp_path):
    env = _claim_env(tmp_path)
    with _every_core_held(env) as (holders, lines):
        claimed = [int(line[0]) for line in lines]
        late = _claimer(env)  # every core held: it waits (CLAIM_WAIT_S = 2 s) ...
        time.sleep(1.0)
        holders[0].communicate("", timeout=60)  # ... while the first holder exits
        assert late.communicate("", timeout=120)[0].split() == [str(claimed[0])] * 2
