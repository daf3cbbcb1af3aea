"""Batch scheduling and driver costs: longest inputs first, workers started before the listing,
grouped fsync, one thread per worker, a bad method refused once in the driver."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
