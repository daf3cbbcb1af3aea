"""The wide search's safeguards on real clips: the support rule (search.MIN_WIDE_SPEAKING_S) and
the look-elsewhere penalty (search.look_elsewhere). What do they cost in found offsets, and what
do they save in false alarms?

    python benchmarks/wide_support.py [--clips ../shared/data/realclips] [--method stacked]
        [--cache cache/eval] [--planted-ms 2000]

Every real clip, the automatic search (normal, then +-5 s when unreliable) in three variants on
the same scores (each centre is scored once and reused): ``none`` (neither safeguard: the code
before 2026-12-05), ``support`` (the rule only), ``both`` (the rule and the penalty: now).

Three cases per clip: its own audio (the answer as published), a foreign audio (the next clip of
another speaker: any reliable answer is a false alarm) and its own audio on a clock moved later
by planted ms (what ffmpeg -itsoffset writes: found = within one frame of planted + the own
answer). Prints a markdown table of the counts and the answers the safeguards changed.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
from pathlib import Path

from avsync import search
from avsync.evaluation.cache import cached_analysis
from avsync.evaluation.clips import load_clips
from avsync.features import audio_features
from avsync.inference import CONFIDENCE_THRESHOLD, MIN_TRACK_FRAMES, synchronise
from avsync.io import load_audio
from avsync.models.registry import create_model, needs_neural
from avsync.timing import DEFAULT_MAX_OFFSET_FRAMES, ms_to_frames

VARIANTS = ("none", "support", "both", "strict")
"""strict: as both, but a wide peak replaces the normal answer only when its PENALISED confidence
beats the normal one by WIDE_MARGIN (worked out from both's WideSearch record, no new scores)."""


def variants(analysis, feats, fps: float, model) -> dict[str, tuple[float, float, bool]]:
    """(offset_frames, confidence, answer from a wide peak) per variant."""
    done: dict[int, tuple] = {}

    def score_at(centres: list[int]) -> list[tuple]:
        for c in centres:
            if c not in done:
                done[c] = synchronise(analysis, search.delayed(feats, c, fps) if c else feats, fps,
                                      model, DEFAULT_MAX_OFFSET_FRAMES, drift=False)
        return [done[c] for c in centres]

    out = {}
    rule_s, penalty = search.MIN_WIDE_SPEAKING_S, search.look_elsewhere
    for v in VARIANTS[:3]:
        search.MIN_WIDE_SPEAKING_S = 0.0 if v == "none" else rule_s
        search.look_elsewhere = penalty if v == "both" else (lambda n, w: 0.0)
        try:
            _, cs, info = search.synchronise_wide(analysis, feats, fps, model, DEFAULT_MAX_OFFSET_FRAMES,
                                                  False, None, score_at)
        finally:
            search.MIN_WIDE_SPEAKING_S, search.look_elsewhere = rule_s, penalty
        out[v] = (cs.offset_frames, cs.confidence, info.centre_ms != 0)
    out["strict"] = out["both"]
    if info.centre_ms != 0 and info.normal_confidence is not None and \
            info.wide_confidence - info.penalty < info.normal_confidence + search.WIDE_MARGIN:
        out["strict"] = (info.normal_offset_frames, info.normal_confidence, False)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=Path, default=Path("../shared/data/realclips"))
    ap.add_argument("--method", default="stacked")
    ap.add_argument("--cache", type=Path, default=Path("cache/eval"))
    ap.add_argument("--planted-ms", type=float, default=2000.0)
    args = ap.parse_args()
    model = create_model(args.method)
    items = []
    for c in load_clips(args.clips):
        try:
            a = cached_analysis(c.path, args.cache, keep_crops=needs_neural(model))
        except Exception as exc:  # noqa: BLE001  (a clip that cannot be analysed is skipped, said)
            print(f"skip {c.path}: {exc}", file=sys.stderr)
            continue
        if any(t.n_frames >= MIN_TRACK_FRAMES for t in a.tracks):
            items.append((c, a))
    rows = ("own audio: reliable", "own audio: answer from a wide peak",
            "foreign audio: reliable (false alarms)", "foreign: false alarms from a wide peak",
            f"+{args.planted_ms:.0f} ms planted: found",
            f"+{args.planted_ms:.0f} ms planted: found and reliable")
    tally = {r: dict.fromkeys(VARIANTS, 0) for r in rows}
    changed = []
    for i, (c, a) in enumerate(items):
        fps = a.fps
        own = load_audio(c.path)
        j = next((k for k in list(range(i + 1, len(items))) + list(range(i))
                  if items[k][0].speaker != c.speaker), None)
        feats = audio_features(own.samples, own.start_s)
        cases = {"own": feats}
        if j is not None:
            other = load_audio(items[j][0].path)
            cases["foreign"] = audio_features(other.samples, own.start_s)
        k = int(round(ms_to_frames(args.planted_ms, fps)))
        cases["planted"] = search.delayed(feats, -k, fps)  # the audio k frames LATE
        res = {name: variants(a, f, fps, model) for name, f in cases.items()}
        for v in VARIANTS:
            o, p = res["own"][v], res["planted"][v]
            tally[rows[0]][v] += o[1] >= CONFIDENCE_THRESHOLD
            tally[rows[1]][v] += o[2]
            if "foreign" in res:
                f = res["foreign"][v]
                tally[rows[2]][v] += f[1] >= CONFIDENCE_THRESHOLD
                tally[rows[3]][v] += f[1] >= CONFIDENCE_THRESHOLD and f[2]
            found = abs(p[0] - (k + o[0])) <= 1
            tally[rows[4]][v] += found
            tally[rows[5]][v] += found and p[1] >= CONFIDENCE_THRESHOLD
        for name, r in res.items():
            if len({(round(x[0], 1), round(x[1], 2)) for x in r.values()}) > 1:
                changed.append(f"| {c.path.relative_to(args.clips)} | {len(a.tracks)} | {name} | "
                               + " | ".join(f"{r[v][0]:+.1f} ({r[v][1]:.2f})" for v in VARIANTS) + " |")
        print(f"{i + 1}/{len(items)} {c.path.name}", file=sys.stderr, flush=True)
    print(f"Method `{args.method}`, {len(items)} real clips, MIN_WIDE_SPEAKING_S = "
          f"{search.MIN_WIDE_SPEAKING_S}, look-elsewhere penalty at +-5 s / 25 fps: "
          f"{search.look_elsewhere(251, 2 * DEFAULT_MAX_OFFSET_FRAMES + 1):.2f}. {platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}, {datetime.date.today()}.\n")
    print("| count | " + " | ".join(VARIANTS) + " |\n|---|" + "---|" * len(VARIANTS))
    for r in rows:
        print(f"| {r} | " + " | ".join(str(tally[r][v]) for v in VARIANTS) + " |")
    print(f"\n{len(changed)} answers differ between the variants (frames (confidence)):\n")
    if changed:
        print("| clip | tracks | case | " + " | ".join(VARIANTS) + " |\n|---|---|---|"
              + "---|" * len(VARIANTS))
        print("\n".join(changed))


if __name__ == "__main__":
    main()
