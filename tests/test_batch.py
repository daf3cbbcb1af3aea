"""avsync batch (local engine) and avsync report, end to end on the shipped GRID example.

One CLI batch over a folder (in sync, 200 ms late, and a broken file in the middle) with the
default method checks: rows equal to detect's, error lines without stopping, exit code 1, the
--keep manifest, --fix-dir. Then a driver killed with SIGKILL resumes with every input once, and
the report renders in headless Chromium with one table row per input and no console message.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import same_result

import avsync
from avsync.batch.store import read_results

SRC = Path(__file__).resolve().parents[1] / "src"


def _cli(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "avsync.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def _run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = _cli(*args)
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture(scope="module")
def batch_run(example_clip, tmp_path_factory):
    """The folder, results and stderr of one `avsync batch` run (default method, 2 workers)."""
    root = tmp_path_factory.mktemp("batch")
    clips = root / "clips"
    clips.mkdir()
    shutil.copy(example_clip, clips / "a_sync.mp4")
    (clips / "b_broken.mp4").write_bytes(b"not a video" * 100)
    avsync.fix(example_clip, clips / "c_late.mp4", offset_ms=-200.0)  # audio 200 ms (5 frames) late
    stat_before = {p.name: p.stat().st_mtime_ns for p in clips.iterdir()}
    res = _run("batch", str(clips), "-o", str(root / "results.jsonl"), "--workers", "2",
               "--keep", "reliable and abs(offset_ms) <= 40", "--kept", str(root / "kept.jsonl"),
               "--fix-dir", str(root / "fixed"))
    assert {p.name: p.stat().st_mtime_ns for p in clips.iterdir()} == stat_before  # inputs untouched
    return root, res


def test_batch_rows_match_detect_errors_keep_and_fix(batch_run):
    root, res = batch_run
    assert res.returncode == 1, res.stderr  # one input failed
    assert "Traceback" not in res.stderr
    rows = {Path(r["path"]).name: r for r in read_results(root / "results.jsonl")}
    assert sorted(rows) == ["a_sync.mp4", "b_broken.mp4", "c_late.mp4"]
    assert "error" in rows["b_broken.mp4"] and "not a media file" in rows["b_broken.mp4"]["error"]
    assert all(len(r["input_id"]) == 16 for r in rows.values())
    ref = avsync.detect(root / "clips" / "c_late.mp4").to_dict()  # what `detect --json` prints
    got = rows["c_late.mp4"]
    for key in ("method", "offset_frames", "offset_ms", "reliable"):
        assert got[key] == ref[key], key
    for key in ("confidence", "curve", "tracks"):  # last decimals may differ: see same_result
        assert same_result(got[key], ref[key]), key
    assert abs(got["offset_frames"] - 5) <= 0.3 and got["reliable"]  # sub-frame offsets (one decimal)
    assert abs(rows["a_sync.mp4"]["offset_frames"]) <= 0.3 and rows["a_sync.mp4"]["reliable"]
    fixed = Path(rows["c_late.mp4"]["fixed"])
    assert fixed.parent == root / "fixed" and fixed.is_file()
    assert "fixed" not in rows["a_sync.mp4"]  # in sync: nothing to fix
    kept = [json.loads(line) for line in (root / "kept.jsonl").read_text().splitlines()]
    assert [Path(k["path"]).name for k in kept] == ["a_sync.mp4"]
    assert "3 inputs: 2 measured, 1 failed" in res.stderr


def test_report_renders_in_chromium(batch_run, tmp_path):
    root, _ = batch_run
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    res = _run("report", str(root / "results.jsonl"), "-o", str(tmp_path / "report.html"))
    assert res.returncode == 0, res.stderr
    html = (tmp_path / "report.html").read_text()
    assert "<script src" not in html and "<link" not in html  # self-contained
    if chromium is None:
        pytest.skip("chromium is not installed")
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
             "--window-size=1280,1600"]
    url = (tmp_path / "report.html").as_uri()
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    body = re.search(r"<body[^>]*>", dom.stdout).group(0)
    assert 'data-ready="1"' in body and "data-js-errors" not in body  # the script ran to its end
    assert "CONSOLE" not in dom.stderr, dom.stderr
    tbody = re.search(r'<tbody id="rows">(.*?)</tbody>', dom.stdout, re.S).group(1)
    assert tbody.count("<tr ") == 3
    assert "3 of 3 shown" in dom.stdout
    shot = subprocess.run([*flags, f"--screenshot={tmp_path / 'report.png'}", url], capture_output=True,
                          text=True, timeout=120)
    assert "CONSOLE" not in shot.stderr
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_driver_killed_then_resume_gives_each_input_once(example_clip, tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    for i in range(3):
        shutil.copy(example_clip, clips / f"c{i}.mp4")
    out = tmp_path / "r.jsonl"
    args = ("batch", str(clips), "-o", str(out), "--method", "avcorr", "--workers", "1")
    proc = _cli(*args, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None and not (out.exists() and read_results(out)):
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)  # the driver only: its worker dies with it (PDEATHSIG)
    proc.communicate()
    first = read_results(out)
    assert 1 <= len(first) < 3
    res = _run(*args, "--resume")
    assert res.returncode == 0, res.stderr
    assert "resuming" in res.stderr or f"{len(first)} already done" in res.stderr
    rows = read_results(out)
    assert sorted(Path(r["path"]).name for r in rows) == [f"c{i}.mp4" for i in range(3)]
    assert all("error" not in r for r in rows)
    assert out.read_bytes().endswith(b"\n")
    again = _run(*args, "--resume")  # nothing left: nothing done twice
    assert again.returncode == 0 and len(read_results(out)) == 3


def _pool_workers() -> list[int]:
    """Pids of this process's spawned pool workers (not multiprocessing's resource tracker)."""
    pids = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            ppid = int(re.search(r"PPid:\s+(\d+)", status.read_text()).group(1))
            cmd = (status.parent / "cmdline").read_bytes()
        except (OSError, AttributeError):
            continue
        if ppid == os.getpid() and b"spawn_main" in cmd:
            pids.append(int(status.parent.name))
    return pids


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_killed_pool_worker_loses_no_input(example_clip, tmp_path):
    from avsync.batch.inputs import make_input
    from avsync.batch.local import LocalEngine
    from avsync.batch.worker import WorkerConfig

    for i in range(3):
        shutil.copy(example_clip, tmp_path / f"c{i}.mp4")
    items = [make_input(tmp_path / f"c{i}.mp4") for i in range(3)]
    seen = []
    engine = LocalEngine(WorkerConfig("avcorr"), workers=1)
    for item, row in engine.run(items):
        if not seen:  # the worker holds the next input now: kill it outright
            victims = _pool_workers()
            assert len(victims) == 1
            os.kill(victims[0], signal.SIGKILL)
        assert "error" not in row, row
        seen.append(item.input_id)
    assert sorted(seen) == sorted(i.input_id for i in items)  # retried on a new pool, once each
    assert engine.restarts == 1


def test_finished_local_run_leaves_no_worker_behind(tmp_path):
    """run() returns once its workers have exited, so their cores are free for the next pool (a
    lingering worker of a 1-worker run left one worker of the next 2-worker run unpinned)."""
    from avsync.batch.inputs import make_input
    from avsync.batch.local import LocalEngine
    from avsync.batch.worker import WorkerConfig

    missing = [make_input(tmp_path / f"missing{i}.mp4") for i in range(2)]
    engine = LocalEngine(WorkerConfig("avcorr"), workers=2)
    engine.start()
    rows = [row for _, row in engine.run(missing)]
    assert len(rows) == 2 and all("error" in r for r in rows)
    assert _pool_workers() == []
