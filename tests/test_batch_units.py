"""Batch building blocks without media work: --keep expressions, the results store, inputs."""

from __future__ import annotations

import json
import os

import pytest

from avsync.batch.inputs import expand_inputs
from avsync.batch.keep import KeepExpressionError, KeepFilter
from avsync.batch.report import priority, render_report
from avsync.batch.runner import RESULT_FIELDS
from avsync.batch.store import ResultStore, latest_per_path, read_results
from avsync.errors import AvsyncError, OutputError

ROW = {"path": "a.mp4", "offset_ms": -40.0, "offset_frames": -1, "confidence": 3.5, "reliable": True,
       "method": "avcorr", "duration_s": 12.0}


@pytest.mark.parametrize("expr, expected", [
    ("reliable and abs(offset_ms) <= 40", True),
    ("reliable and abs(offset_ms) < 40", False),
    ("not reliable or confidence >= 4", False),
    ("(confidence > 3 or duration_s > 60) and not error", True),
    ("method == 'avcorr' and offset_frames == -1", True),
    ('method != "avcorr"', False),
    ("offset_ms + 40 == 0 and -offset_frames > 0", True),
    ("max(abs(offset_ms), 10) == 40 and min(confidence, 1) == 1", True),
    ("error", False),
    ("missing_field > 0", False),          # a comparison with null is false
    ("not missing_field", True),
    ("method > 3", False),                 # a string against a number: false, not an exception
    ("1.2e1 <= duration_s and .5e1 < duration_s", True),
])
def test_keep_expressions(expr, expected):
    assert KeepFilter(expr)(ROW) is expected


@pytest.mark.parametrize("expr", ["", "reliable and", "abs(offset_ms", "__import__('os').system('x')",
                                  "offset_ms <= 40 )", "open(path)", "abs(1, 2)", "offset_ms; 1",
                                  "reliable && 1", "offset_ms <= = 3"])
def test_keep_rejects_bad_expressions(expr):
    with pytest.raises(KeepExpressionError):
        KeepFilter(expr)


def test_keep_reports_unknown_fields():
    KeepFilter("reliable and abs(offset_ms) <= 40 and not error").check_fields(RESULT_FIELDS)
    with pytest.raises(KeepExpressionError, match="confidnce"):
        KeepFilter("confidnce > 3").check_fields(RESULT_FIELDS)


def test_store_drops_torn_tail_and_resumes(tmp_path):
    out = tmp_path / "r.jsonl"
    with ResultStore(out) as store:
        store.append({"path": "a", "input_id": "1", "offset_ms": 0.0})
        store.append({"path": "b", "input_id": "2", "error": "bad"})
    with open(out, "ab") as fh:  # a writer killed mid-line
        fh.write(b'{"path": "c", "input_id": "3", "offs')
    assert [r["input_id"] for r in read_results(out)] == ["1", "2"]
    with pytest.raises(OutputError, match="--resume"):
        ResultStore(out)
    with ResultStore(out, resume=True) as store:
        assert store.done == {"1", "2"}
        store.append({"path": "c", "input_id": "3", "offset_ms": 40.0})
    lines = out.read_text().splitlines()
    assert [json.loads(line)["input_id"] for line in lines] == ["1", "2", "3"]
    with ResultStore(out, overwrite=True) as store:
        assert store.done == set()
    assert out.read_text() == ""


def test_latest_per_path_keeps_last_row():
    rows = [{"path": "a", "v": 1}, {"path": "b", "v": 2}, {"path": "a", "v": 3}]
    assert latest_per_path(rows) == [{"path": "b", "v": 2}, {"path": "a", "v": 3}]


def test_expand_inputs_files_folders_globs_manifests(tmp_path):
    media = tmp_path / "media"
    (media / "sub").mkdir(parents=True)
    for name in ("a.mp4", "sub/b.MKV", "sub/notes.txt"):
        (media / name).write_bytes(b"x")
    (tmp_path / "m.jsonl").write_text(json.dumps({"path": "media/a.mp4", "speaker": "s1", "split": "train"})
                                      + "\n" + json.dumps({"path": "media/missing.mp4"}) + "\n")
    (tmp_path / "m.tsv").write_text("path\tkind\nmedia/sub/b.MKV\treal\n")
    from_folder = expand_inputs([media])
    assert [os.path.relpath(i.path, media) for i in from_folder] == ["a.mp4", "sub/b.MKV"]
    assert all(os.path.isabs(i.path) for i in from_folder)
    from_glob = expand_inputs([str(media / "**" / "*.MKV")])
    assert [os.path.basename(i.path) for i in from_glob] == ["b.MKV"]
    from_manifest = expand_inputs([tmp_path / "m.jsonl", tmp_path / "m.tsv", media / "a.mp4"])
    names = [os.path.relpath(i.path, tmp_path) for i in from_manifest]
    assert names == ["media/a.mp4", "media/missing.mp4", "media/sub/b.MKV"]  # a.mp4 once
    assert from_manifest[0].meta == {"speaker": "s1", "split": "train"}
    before = from_folder[0].input_id
    os.utime(media / "a.mp4", ns=(1, 1))  # a changed file is a new input for --resume
    assert expand_inputs([media / "a.mp4"])[0].input_id != before
    with pytest.raises(AvsyncError, match="no such file"):
        expand_inputs([tmp_path / "nope.mp4"])
    with pytest.raises(AvsyncError, match="no media"):
        expand_inputs([str(tmp_path / "*.mov")])


def test_report_orders_worst_first_and_tolerates_missing_keys():
    rows = [{"path": "ok.mp4", "offset_frames": 0, "offset_ms": 0.0, "confidence": 6.0, "reliable": True},
            {"path": "late.mp4", "offset_frames": 5, "offset_ms": 200.0, "confidence": 8.0, "reliable": True},
            {"path": "weak.mp4", "offset_frames": 2, "offset_ms": 80.0, "confidence": 1.0, "reliable": False},
            {"path": "bad.mp4", "error": "cannot read <it>"}]
    order = [r["path"] for r in sorted(rows, key=priority)]
    assert order == ["bad.mp4", "weak.mp4", "late.mp4", "ok.mp4"]
    html = render_report(rows)
    assert html.count('<tr class=') == 4
    assert "cannot read &lt;it&gt;" in html  # escaped
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing fetched


def test_local_path_never_imports_ray():
    import subprocess
    import sys

    code = ("import sys; import avsync.cli, avsync.cli_batch, avsync.batch.local, avsync.batch.report; "
            "from avsync.batch.runner import make_engine; from avsync.batch.worker import WorkerConfig; "
            "make_engine('local', WorkerConfig('avcorr'), 1, None); print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.stdout.strip() == "False"


def test_batch_fast_reaches_every_detect(monkeypatch, tmp_path):
    """``avsync batch --fast`` -> run_batch(fast=True) -> WorkerConfig.fast -> detect(fast=True)."""
    from typer.testing import CliRunner

    import avsync.batch
    import avsync.inference
    from avsync.batch.inputs import BatchInput
    from avsync.batch.worker import WorkerConfig, process
    from avsync.cli import app

    seen = []

    class _Result:
        def to_dict(self) -> dict:
            return {"path": "x", "offset_frames": 0.0, "reliable": False}

    monkeypatch.setattr(avsync.inference, "detect", lambda path, **kw: seen.append(kw) or _Result())
    for fast in (False, True):
        row = process(BatchInput("x.mp4", "id"), WorkerConfig("avcorr", fast=fast))
        assert row["input_id"] == "id"
    assert [kw["fast"] for kw in seen] == [False, True]

    class _Summary:
        failed_overall = 0

        def line(self) -> str:
            return "done"

    calls = []
    monkeypatch.setattr(avsync.batch, "run_batch", lambda *a, **kw: calls.append(kw) or _Summary())
    out = str(tmp_path / "r.jsonl")
    res = CliRunner().invoke(app, ["batch", "--fast", "--no-progress", "-o", out, "x.mp4"])
    assert res.exit_code == 0 and [kw["fast"] for kw in calls] == [True]
