"""Markdown of the method comparison (used by benchmarks/compare.py)."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

CONTEXTS = (5, 7, 9, 11, 13, 15)

PAPERS: dict[str, str] = {
    "syncnet": "SyncNet, LRS2 test (VocaLiST Table 1): 75.8 / 82.3 / 87.6 / 91.8 / 94.5 / 96.1 % at "
               "5..15 frames, 13.6M params; Perfect Match: 88.1 / 93.8 / 96.4 / 97.9 / 98.7 / 99.1 %",
    "vocalist": "VocaLiST, LRS2 test: 92.8 / 96.7 / 98.4 / 99.3 / 99.6 / 99.8 % at 5..15 frames, "
                "80.1M params",
    "c3": "C3, GRID (WLOS Table 1): MAE 1.02-2.98 frames over -9..9 per speaker; 34 ms per frame (TITAN X)",
    "wlos": "WLOS fine-tuned from C3, GRID: MAE 0.80-1.04 frames; scratch 0.85-1.12; 1.8 ms per frame",
    "simmatrix": "Kim et al. 2021 (abstract only here): 'outperforms previous work by a large margin' on "
                 "LRS2/LRS3; no numbers available to us",
    "qmi": "QMI (Liu & Sato) as reported in WLOS Table 1, GRID: MAE 6.2-6.5 frames",
}
"""What each paper reported (on its own, much larger data), quoted beside our numbers."""


def _fmt(x: float | None, pct: bool = True, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{100 * x:.{digits}f}" if pct else f"{x:.{digits}f}"


def summarise(cases: list[dict]) -> dict[str, float]:
    by_ctx: dict[str, list[dict]] = defaultdict(list)
    for c in cases:
        by_ctx[c["context"]].append(c)
    out: dict[str, float] = {}
    for ctx, cs in by_ctx.items():
        err = np.array([abs(c["predicted"] - c["shift"]) for c in cs])
        out[f"acc1_{ctx}"] = float(np.mean(err <= 1))
        out[f"acc2_{ctx}"] = float(np.mean(err <= 2))
    whole = by_ctx.get("whole", [])
    mae = [abs(c["predicted"] - c["shift"]) for c in whole if -9 <= c["shift"] <= 9]
    out["mae"] = float(np.mean(mae)) if mae else float("nan")
    zero = {c["clip"]: c["predicted"] for c in whole if c["shift"] == 0}
    cons = [abs(c["predicted"] - zero[c["clip"]] - c["shift"]) <= 1 for c in whole if c["clip"] in zero]
    out["consistency"] = float(np.mean(cons)) if cons else float("nan")
    return out


def render(cases: list[dict], names: list[str], speeds: dict, runs: dict, info: dict,
           min_frames: dict[str, int] | None = None) -> str:
    """min_frames: shortest input each method can score; shorter context columns read "n/a"."""
    min_frames = min_frames or {}
    per: dict[str, list[dict]] = defaultdict(list)
    for c in cases:
        per[c["method"]].append(c)
    head = ("| method | params | " + " | ".join(f"±1 @{c}" for c in CONTEXTS)
            + " | ±1 whole | ±2 whole | MAE −9..9 | consistency | ms/frame CPU | ms/frame GPU "
            "| s per min (e2e, CPU) |")
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for n in names:
        s, sp = summarise(per[n]), speeds.get(n, {})
        params = f"{sp['params'] / 1000:.0f}k" if "params" in sp else "0 (training-free)"
        rows.append("| " + " | ".join([
            n, params, *[_fmt(s.get(f"acc1_{c}")) if c >= min_frames.get(n, 1) else "n/a" for c in CONTEXTS],
            _fmt(s.get("acc1_whole")),
            _fmt(s.get("acc2_whole")), _fmt(s.get("mae"), pct=False, digits=2),
            _fmt(s.get("consistency")), _fmt(sp.get("ms_per_frame_cpu"), pct=False, digits=2),
            _fmt(sp.get("ms_per_frame_cuda"), pct=False, digits=3),
            _fmt(sp.get("e2e_s_per_min"), pct=False, digits=0)]) + " |")
    train_rows = ["| run | steps (best) | train clips / speakers | label moves | best val @5 (+-1) "
                  "| val @15 | seconds |", "|---|---|---|---|---|---|---|"]
    for n, r in runs.items():
        moves = [m for m in r.get("label_moves", []) if m]
        b = r.get("best", {})
        train_rows.append(f"| {n} | {r.get('steps_run')} ({r.get('best_step')}) | {r.get('train_clips')} / "
                          f"{r.get('train_speakers')} | {len(moves)} | {_fmt(b.get('val_acc'))} | "
                          f"{_fmt(b.get('val_acc_ctx15'))} | {r.get('seconds')} |")
    papers = "\n".join(f"- **{k}**: {v}" for k, v in PAPERS.items())
    return f"""## Method comparison (issue 3)

Command: `{info['command']}` — {info['date']}, {info['machine']}. Protocol: `avsync evaluate`'s
shifted cases (audio padded/trimmed by k in {info['shifts']} frames, search ±15) on the {info['n_clips']}
validation clips of `src/avsync/data/realclips_split.jsonl` (11 speakers never seen in training),
the same cases for every method; whole-clip cases run the full `detect` path with {info['nulls']}
null rolls per case (same for all). Accuracies in %; "—" = not measured (no GPU was lent); "n/a" =
the method cannot score so short an input (the 10-frame lip-flow models c3 and wlos need 11 frames;
a fusion with c3 then runs on its other members).
ms/frame: the sync model alone scoring 31
shifts for one track (batched, no caches); s per min: face analysis ({info['analysis_s_per_min']:.0f}
s/min, the same for all) + scoring with 12 nulls and drift, on `{info['speed_clip'].split('/')[-1]}`.
{info['eval_text']}

{chr(10).join(rows)}

Training runs (runs/NAME/run.json, curves in runs/NAME/curves.png):

{chr(10).join(train_rows)}

What the papers reported (their own data, orders of magnitude more of it; not comparable
numbers, quoted for scale):

{papers}
"""
