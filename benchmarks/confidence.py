"""Does the confidence mean something? Matched vs mismatched audio on real clips.

For every real clip (face analysis from the evaluation cache): the confidence of the result with
its own audio (matched) and with the audio of a clip of another speaker (mismatched, the case a
dubbed or wrongly-muxed file presents). Prints a markdown table: AUC, and for several thresholds
the share of matched clips called reliable and of mismatched clips wrongly called reliable.

    python benchmarks/confidence.py [--clips ../shared/data/realclips] [--method avcorr]
        [--split val]   # only the held-out speakers of the realclips split (for trained methods)
        [--mismatch all]   # every video against every other speaker's audio, not one pair per clip
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
from pathlib import Path

import numpy as np

from avsync.evaluation.cache import cached_analysis
from avsync.evaluation.clips import load_clips
from avsync.evaluation.report import auc
from avsync.features import audio_features
from avsync.inference import MIN_TRACK_FRAMES, synchronise
from avsync.io import load_audio
from avsync.models.registry import create_model

THRESHOLDS = (1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0)


def held_out(clips: list, split: str) -> list:
    """The clips of ``split`` ("all", or "val"/"train" of the realclips split file)."""
    if split == "all":
        return clips
    from avsync.data.splits import REALCLIPS_SPLIT, read_split

    train, val = read_split(REALCLIPS_SPLIT)
    keep = {c.path.as_posix() for c in (val if split == "val" else train)}
    return [c for c in clips if any(c.path.as_posix().endswith("/" + k) for k in keep)]


def run(clips_spec: Path, method: str, cache: Path, split: str = "all", mismatch: str = "next") -> str:
    """mismatch: "next" = each video with the audio of the next clip of another speaker (one pair
    per clip); "all" = each video with the audio of every clip of another speaker."""
    from avsync.models.registry import needs_neural

    clips = held_out(load_clips(clips_spec), split)
    model = create_model(method)
    crops = needs_neural(model)
    analyses, audios = [], []
    for c in clips:
        try:
            a = cached_analysis(c.path, cache, keep_crops=crops)
        except Exception as exc:  # noqa: BLE001
            print(f"skip {c.path}: {exc}", file=sys.stderr)
            continue
        if any(t.n_frames >= MIN_TRACK_FRAMES for t in a.tracks):
            analyses.append((c, a))
            audios.append(load_audio(c.path))
    matched, mismatched = [], []
    n = len(analyses)
    for i, (_, a) in enumerate(analyses):
        feats = audio_features(audios[i].samples, audios[i].start_s)
        matched.append(synchronise(a, feats, a.fps, model, drift=False)[1].confidence)
        for j in _foreign(analyses, i, mismatch):
            feats = audio_features(audios[j].samples, audios[i].start_s)
            mismatched.append(synchronise(a, feats, a.fps, model, drift=False)[1].confidence)
    m, mm = np.array(matched), np.array(mismatched)
    which = "every clip of another speaker" if mismatch == "all" else "another speaker's clip"
    lines = [f"Method `{method}`, {n} real clips ({split}), matched = own audio, {len(mm)} mismatched = "
             f"audio of {which}. {platform.machine()}, Python {platform.python_version()}, "
             f"{datetime.date.today().isoformat()}.", "",
             f"AUC (matched vs mismatched): **{auc(m, mm):.3f}**; median confidence matched "
             f"{np.median(m):.2f}, mismatched {np.median(mm):.2f}.", "",
             "| threshold | matched called reliable | mismatched called reliable |",
             "|---|---|---|"]
    for t in THRESHOLDS:
        lines.append(f"| {t} | {np.mean(m >= t):.3f} | {np.mean(mm >= t):.3f} |")
    return "\n".join(lines) + "\n"


def _foreign(analyses: list, i: int, mismatch: str) -> list[int]:
    """Indices of the clips whose audio is put under clip i's video (never its own speaker's);
    "next": the next clip of another speaker (unrelated speech of similar style)."""
    n, speaker = len(analyses), analyses[i][0].speaker
    others = [(i + d) % n for d in range(1, n) if analyses[(i + d) % n][0].speaker != speaker]
    if mismatch == "all":
        return sorted(others)
    return others[:1]


def cases_section(cases_json: Path, method: str) -> str:
    """Confidence vs correctness on the shifted cases of an `avsync evaluate --json` run."""
    import json

    if not cases_json.is_file():
        return ""
    cases = [c for c in json.loads(cases_json.read_text()) if c["context"] == "whole"
             and c["method"] == method]
    zero = {c["clip"]: c["predicted"] for c in cases if c["shift"] == 0}
    cases = [c for c in cases if c["clip"] in zero]
    conf = np.array([c["confidence"] for c in cases])
    right = np.array([abs(c["predicted"] - c["shift"]) <= 1 for c in cases])
    consistent = np.array([abs(c["predicted"] - zero[c["clip"]] - c["shift"]) <= 1 for c in cases])
    lines = ["", f"On the {len(cases)} whole-clip shifted cases of `{cases_json}`: AUC right vs "
             f"wrong (|pred - k| <= 1) **{auc(conf[right], conf[~right]):.3f}**; AUC consistent "
             f"vs inconsistent (|pred(k) - pred(0) - k| <= 1) "
             f"**{auc(conf[consistent], conf[~consistent]):.3f}**. Wrong answers are dominated by "
             "clips whose own offset is confidently non-zero (see the flagged list above), which "
             "the confidence cannot know about.", "",
             "| threshold | cases kept | accuracy ±1 among kept | consistent among kept |",
             "|---|---|---|---|"]
    for t in THRESHOLDS:
        keep = conf >= t
        lines.append(f"| {t} | {keep.mean():.3f} | {right[keep].mean():.3f} | "
                     f"{consistent[keep].mean():.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=Path, default=Path("../shared/data/realclips"))
    ap.add_argument("--method", default="avcorr")
    ap.add_argument("--cache", type=Path, default=Path("cache/eval"))
    ap.add_argument("--split", choices=("all", "val", "train"), default="all",
                    help="val: only the held-out speakers of the realclips split")
    ap.add_argument("--cases", type=Path, default=Path("cache/eval_cases.json"),
                    help="per-case JSON of an `avsync evaluate --json` run (optional)")
    ap.add_argument("--mismatch", choices=("next", "all"), default="next",
                    help="all: every video with the audio of every clip of another speaker")
    args = ap.parse_args()
    print(run(args.clips, args.method, args.cache, args.split, args.mismatch)
          + cases_section(args.cases, args.method))


if __name__ == "__main__":
    main()
