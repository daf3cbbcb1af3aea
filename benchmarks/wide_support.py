"""Does the wide search's support rule (search.MIN_WIDE_SPEAKING_S) cost found offsets, and what
does it save? Every real clip, the automatic search (normal, then +-5 s when unreliable), with the
rule and without it (the same scores: each centre is scored once and reused).

    python benchmarks/wide_support.py [--clips ../shared/data/realclips] [--method stacked]
        [--cache cache/eval] [--planted-ms 2000]

Three cases per clip: its own audio (the answer as published), a foreign audio (the next clip of
another speaker: any reliable answer is a false alarm) and its own audio on a clock moved later
by planted ms (what ffmpeg -itsoffset writes: found = within one frame of planted + the own
answer).
Prints a markdown table of the counts and the clips where the rule changed an answer.
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


def both_ways(analysis, feats, fps: float, model) -> tuple[tuple, tuple]:
    """(offset_frames, confidence, wide used) of the automatic search without and with the rule."""
    done: dict[int, tuple] = {}

    def score_at(centres: list[int]) -> list[tuple]:
        for c in centres:
            if c not in done:
                done[c] = synchronise(analysis, search.delayed(feats, c, fps) if c else feats, fps,
                                      model, DEFAULT_MAX_OFFSET_FRAMES, drift=False)
        return [done[c] for c in centres]

    out = []
    for rule_s in (0.0, search.MIN_WIDE_SPEAKING_S):
        saved, search.MIN_WIDE_SPEAKING_S = search.MIN_WIDE_SPEAKING_S, rule_s
        try:
            _, cs, info = search.synchronise_wide(analysis, feats, fps, model, DEFAULT_MAX_OFFSET_FRAMES,
                                                  False, None, score_at)
        finally:
            search.MIN_WIDE_SPEAKING_S = saved
        out.append((cs.offset_frames, cs.confidence, info.centre_ms != 0))
    return out[0], out[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=Path, default=Path("../shared/data/realclips"))
    ap.add_argument("--method", default="stacked")
    ap.add_argument("--cache", type=Path, default=Path("cache/eval"))
    ap.add_argument("--planted-ms", type=float, default=2000.0)
    args = ap.parse_args()
    model = create_model(args.method)
    clips = load_clips(args.clips)
    items = []
    for c in clips:
        try:
            a = cached_analysis(c.path, args.cache, keep_crops=needs_neural(model))
        except Exception as exc:  # noqa: BLE001  (a clip that cannot be analysed is skipped, said)
            print(f"skip {c.path}: {exc}", file=sys.stderr)
            continue
        if any(t.n_frames >= MIN_TRACK_FRAMES for t in a.tracks):
            items.append((c, a))
    tally = {k: [0, 0] for k in ("own reliable", "foreign reliable", "planted found",
                                          "planted found reliable", "wide answers")}
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
        res = {name: both_ways(a, f, fps, model) for name, f in cases.items()}
        n_long = sum(t.n_frames >= MIN_TRACK_FRAMES for t in a.tracks)
        for idx in (0, 1):
            o, f_, p = res["own"][idx], res.get("foreign", (None, None))[idx], res["planted"][idx]
            tally["own reliable"][idx] += o[1] >= CONFIDENCE_THRESHOLD
            tally["foreign reliable"][idx] += f_ is not None and f_[1] >= CONFIDENCE_THRESHOLD
            found = abs(p[0] - (k + res["own"][idx][0])) <= 1
            tally["planted found"][idx] += found
            tally["planted found reliable"][idx] += found and p[1] >= CONFIDENCE_THRESHOLD
            tally["wide answers"][idx] += sum(res[n][idx][2] for n in res)
        for name, (off, on) in res.items():
            if (round(off[0], 1), round(off[1], 2)) != (round(on[0], 1), round(on[1], 2)):
                changed.append(f"| {c.path.relative_to(args.clips)} | {n_long} | {name} | "
                               f"{off[0]:+.1f} ({off[1]:.2f}) | {on[0]:+.1f} ({on[1]:.2f}) |")
        print(f"{i + 1}/{len(items)} {c.path.name}", file=sys.stderr)
    n = len(items)
    print(f"Method `{args.method}`, {n} real clips, planted {args.planted_ms:+.0f} ms (clock moved), "
          f"MIN_WIDE_SPEAKING_S = {search.MIN_WIDE_SPEAKING_S}. {platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}, {datetime.date.today()}.\n")
    print("| count | without the rule | with the rule |\n|---|---|---|")
    for name, (off, on) in tally.items():
        print(f"| {name} | {off} | {on} |")
    print(f"\n{len(changed)} answers changed by the rule:\n")
    if changed:
        print("| clip | tracks >= 12 frames | case | without: frames (conf) | with: frames (conf) |")
        print("|---|---|---|---|---|")
        print("\n".join(changed))


if __name__ == "__main__":
    main()
