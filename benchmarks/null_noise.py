"""How much a confidence depends on which circular displacements form its null.

    python benchmarks/null_noise.py VIDEO [--grids 10] [--fast]

A confidence is ``(peak - mean null peak) / std of the null peaks`` over ``inference.N_NULL``
circular displacements of the visual signals (``inference.null_displacements``: evenly spread
between ``max_shift + NULL_GUARD_FRAMES`` and the track's end minus as much). Here the longest
track of VIDEO is scored by the default fusion's members once on the curve and on ``--grids``
other grids of N_NULL displacements, each grid moved by a few frames inside the same allowed
range, and each member's confidence and the fusion's (``models.fusion.fuse_curves`` of the
members' curves, as ``stacked`` scores) are computed per grid. ``--fast``: the same on the
``detect --fast`` face analysis. Markdown rows on stdout: min, median and max over the grids.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("video", type=Path)
    ap.add_argument("--grids", type=int, default=10)
    ap.add_argument("--fast", action="store_true")
    args = ap.parse_args()
    from avsync.inference import (
        DEFAULT_MAX_OFFSET_FRAMES,
        N_NULL,
        NULL_GUARD_FRAMES,
        analyse_audio,
        analyse_video,
        shifts_for,
        track_input,
    )
    from avsync.io.media import probe
    from avsync.models.fusion import fuse_curves
    from avsync.models.registry import DEFAULT_METHOD, create_model
    from avsync.segments import CurveRequest, curve_of, score_requests

    fusion = create_model(DEFAULT_METHOD)
    members = getattr(fusion, "members", None)
    if not members:
        raise SystemExit(f"the default method {DEFAULT_METHOD} is not a fusion")
    shifts = shifts_for(DEFAULT_MAX_OFFSET_FRAMES)
    analysis = analyse_video(args.video, keep_crops=True, fast=args.fast)
    fps = analysis.rate_fps or probe(args.video).fps
    audio = analyse_audio(args.video)
    track = max(analysis.tracks, key=lambda t: t.n_frames)
    inp = track_input(track, audio, fps)
    lo = DEFAULT_MAX_OFFSET_FRAMES + NULL_GUARD_FRAMES
    hi = inp.n_frames - lo
    step = max(1, (hi - lo) // (N_NULL * args.grids))  # each grid moved by this many frames
    confs: dict[str, list[float]] = {m.name: [] for m in members} | {fusion.name: []}

    def confidence(table: np.ndarray) -> float:
        """The confidence of a (1 + R, K) table, the curve then its R null curves (as detect)."""
        return curve_of(table[0], table[1:], shifts).confidence

    for g in range(args.grids):
        rolls = np.linspace(lo + g * step, hi - (args.grids - 1 - g) * step, N_NULL).astype(int)
        tables = [score_requests(m, [CurveRequest(inp, rolls)], shifts)[0] for m in members]
        for m, t in zip(members, tables, strict=True):
            confs[m.name].append(confidence(np.asarray(t)))
        fused = np.array([fuse_curves([t[j] for t in tables], fusion.config.weights)
                          for j in range(len(tables[0]))])
        confs[fusion.name].append(confidence(fused))
    print(f"{args.video.name}{' (--fast)' if args.fast else ''}: track of {inp.n_frames} frames, "
          f"{args.grids} grids of {N_NULL} displacements in [{lo}, {hi}] frames, moved by {step}\n")
    print("| method | confidence: min | median | max | max / min |\n|---|---|---|---|---|")
    for name, c in confs.items():
        print(f"| {name} | {min(c):.2f} | {np.median(c):.2f} | {max(c):.2f} | {max(c) / min(c):.2f} |")


if __name__ == "__main__":
    main()
