"""avsync batch --engine ray on a local Ray started here (num_cpus=2, no dashboard, no network).

The Ray engine must give detect's numbers, stream every input exactly once, and survive a worker
(actor process) killed with SIGKILL mid-run: its inputs are retried on a replacement actor.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from conftest import same_result  # noqa: E402

import avsync  # noqa: E402
from avsync.batch import read_results, run_batch  # noqa: E402
from avsync.batch.inputs import make_input  # noqa: E402
from avsync.batch.ray_engine import RayEngine  # noqa: E402
from avsync.batch.worker import WorkerConfig  # noqa: E402

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One local Ray for the module; the workers import this checkout's avsync."""
    if ray.is_initialized():
        ray.shutdown()
    path = os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": path, "OMP_NUM_THREADS": "1"}})
    yield
    ray.shutdown()


@pytest.fixture
def copies(example_clip, tmp_path):
    def make(n: int) -> list[Path]:
        paths = [tmp_path / f"c{i}.mp4" for i in range(n)]
        for p in paths:
            shutil.copy(example_clip, p)
        return paths

    return make


def test_ray_engine_matches_detect(copies, tmp_path):
    clips = copies(2)
    (tmp_path / "broken.mp4").write_bytes(b"junk" * 50)
    out = tmp_path / "r.jsonl"
    summary = run_batch([*map(str, clips), str(tmp_path / "broken.mp4")], out, engine="ray",
                        method="avcorr")
    assert (summary.done, summary.failed, summary.failed_overall) == (3, 1, 1)
    rows = {Path(r["path"]).name: r for r in read_results(out)}
    assert sorted(rows) == ["broken.mp4", "c0.mp4", "c1.mp4"]
    assert "error" in rows["broken.mp4"]
    ref = avsync.detect(clips[0], method="avcorr").to_dict()
    for name in ("c0.mp4", "c1.mp4"):
        for key in ("method", "offset_frames", "offset_ms", "reliable"):
            assert rows[name][key] == ref[key], (name, key)
        for key in ("confidence", "curve"):  # last decimals may differ: see same_result
            assert same_result(rows[name][key], ref[key]), (name, key)
    again = run_batch([str(c) for c in clips], out, engine="ray", method="avcorr", resume=True)
    assert (again.skipped, again.done) == (2, 0)


def test_killed_actor_loses_no_input(copies):
    items = [make_input(p) for p in copies(4)]
    engine = RayEngine(WorkerConfig("avcorr"), workers=2)
    seen: list[str] = []
    for item, row in engine.run(items):
        if not seen:  # both actors hold queued inputs now: kill one process outright
            os.kill(engine.worker_pids[0][0], signal.SIGKILL)
        assert "error" not in row, row
        seen.append(item.input_id)
    assert sorted(seen) == sorted(i.input_id for i in items)  # each input exactly once
    assert engine.replaced >= 1
