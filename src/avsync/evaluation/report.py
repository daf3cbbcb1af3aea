"""Markdown report of an evaluation run."""

from __future__ import annotations

import datetime
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from avsync.evaluation.clips import Clip


def _fmt(x: float) -> str:
    return "-" if x != x else f"{x:.3f}"


def auc(pos: Sequence[float], neg: Sequence[float]) -> float:
    """Probability that a random positive scores above a random negative (ties count 1/2)."""
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    if not len(pos) or not len(neg):
        return float("nan")
    gt = (pos[:, None] > neg[None, :]).mean()
    eq = (pos[:, None] == neg[None, :]).mean()
    return float(gt + 0.5 * eq)


def render_report(cases, clips: Sequence[Clip], failures: dict, methods: Sequence[str],
                  shifts: Sequence[int], contexts: Sequence[int], command_info: dict) -> str:
    from avsync.evaluation.protocol import summarise

    ctx_cols = [str(c) for c in contexts] + ["whole"]
    lines = [f"Clips: {len(clips)} from `{command_info['clips']}` ({len(failures)} failed), "
             f"shifts {min(shifts)}..{max(shifts)} ({len(shifts)} values), search +-15 frames. "
             f"Machine: {command_info['machine']}; {datetime.date.today().isoformat()}; "
             f"{command_info['seconds']:.0f} s.", ""]
    head = "| method | " + " | ".join(f"acc±1 @{c}" for c in ctx_cols) + \
           " | acc±2 @whole | MAE −9..9 | shift consistency | conf AUC (right vs wrong) |"
    lines += [head, "|" + "---|" * (len(ctx_cols) + 5)]
    per_method = {}
    for m in methods:
        cs = [c for c in cases if c.method == m]
        s = summarise(cs)
        per_method[m] = s
        whole = [c for c in cs if c.context == "whole"]
        right = [c.confidence for c in whole if abs(c.predicted - c.shift) <= 1]
        wrong = [c.confidence for c in whole if abs(c.predicted - c.shift) > 1]
        lines.append(f"| {m} | " + " | ".join(_fmt(s.get(f"acc1_{c}", np.nan)) for c in ctx_cols)
                     + f" | {_fmt(s.get('acc2_whole', np.nan))} | {_fmt(s['mae_whole_9'])} | "
                     f"{_fmt(s['consistency'])} | {_fmt(auc(right, wrong))} |")
    lines += ["", "Whole-clip accuracy (±1) by speaker (macro average = mean over speakers):", ""]
    lines += ["| speaker | clips | " + " | ".join(methods) + " |", "|---|---|" + "---|" * len(methods)]
    by_spk = defaultdict(lambda: defaultdict(list))
    for c in cases:
        if c.context == "whole":
            by_spk[c.speaker][c.method].append(abs(c.predicted - c.shift) <= 1)
    n_clips = defaultdict(set)
    for c in cases:
        n_clips[c.speaker].add(c.clip)
    macro = defaultdict(list)
    for spk in sorted(by_spk):
        row = []
        for m in methods:
            v = float(np.mean(by_spk[spk][m])) if by_spk[spk][m] else float("nan")
            macro[m].append(v)
            row.append(_fmt(v))
        lines.append(f"| {spk[:48]} | {len(n_clips[spk])} | " + " | ".join(row) + " |")
    lines.append("| **macro average** | | " + " | ".join(_fmt(float(np.nanmean(macro[m])))
                                                     for m in methods) + " |")
    m0 = methods[0]
    own = per_method[m0]["own_offset"]
    flagged = sorted((p, o) for p, o in own.items() if abs(o) >= 3)
    lines += ["", f"Clips whose own offset looks large by {m0} (|predicted at shift 0| ≥ 3 "
              "frames; the clip may itself be out of sync, or the method fails on it):", ""]
    lines += [f"- `{p}`: {o:+d} frames" for p, o in flagged] or ["- none"]
    if failures:
        lines += ["", "Clips that could not be analysed:", ""]
        lines += [f"- `{p}`: {msg}" for p, msg in sorted(failures.items())]
    return "\n".join(lines) + "\n"
