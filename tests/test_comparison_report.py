"""The comparison table's renderer (benchmarks/comparison_report.py) and its helpers."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from compare import eval_text  # noqa: E402
from comparison_report import render, summarise  # noqa: E402
from ship import default_method  # noqa: E402

from avsync.models.registry import DEFAULT_METHOD  # noqa: E402

INFO = {"command": "x", "date": "d", "machine": "m", "shifts": "-3..3..3", "n_clips": 1, "nulls": 0,
        "analysis_s_per_min": 1.0, "speed_clip": "a/b.mp4", "eval_text": "E."}


def _cases(method: str, context: str, errors: list[int]) -> list[dict]:
    return [{"clip": f"c{i}", "method": method, "context": context, "shift": k, "predicted": k + e}
            for i, e in enumerate(errors) for k in (0,)]


def test_summarise_counts_errors_and_consistency():
    cases = _cases("m", "whole", [0, 1, 2, 5]) + _cases("m", "5", [0, 3])
    s = summarise(cases)
    assert s["acc1_whole"] == 0.5 and s["acc2_whole"] == 0.75 and s["acc1_5"] == 0.5
    assert s["mae"] == 2.0 and s["consistency"] == 1.0  # shift 0 only: consistent by definition


def test_render_marks_contexts_shorter_than_the_method_can_score():
    cases = _cases("flow", "5", [0]) + _cases("flow", "11", [0]) + _cases("flow", "whole", [0])
    table = render(cases, ["flow"], {}, {}, INFO, min_frames={"flow": 11})
    row = next(line for line in table.splitlines() if line.startswith("| flow |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2:5] == ["n/a"] * 3 and cells[5] == "100.0"  # 5, 7, 9 frames n/a; 11 scored
    row = next(line for line in render(cases, ["flow"], {}, {}, INFO).splitlines()
               if line.startswith("| flow |"))
    assert "n/a" not in row


def test_eval_text_says_what_was_reused():
    assert "earlier invocations" in eval_text(1.0, 0, 5)
    assert eval_text(120.0, 2, 5).startswith("Evaluating 2 methods took 2 min (the other 3")
    assert "other" not in eval_text(60.0, 5, 5)


def test_cards_name_the_registry_default():
    name, desc = default_method()
    assert name == DEFAULT_METHOD and desc


def test_confidence_foreign_audio_never_the_same_speaker():
    from types import SimpleNamespace

    from confidence import _foreign

    clips = [(SimpleNamespace(speaker=s), None) for s in ["a", "a", "b", "c", "b"]]
    assert _foreign(clips, 0, "next") == [2]
    assert _foreign(clips, 4, "next") == [0]  # wraps around
    assert _foreign(clips, 2, "all") == [0, 1, 3]
    assert all(clips[j][0].speaker != clips[i][0].speaker
               for i in range(5) for j in _foreign(clips, i, "all"))
