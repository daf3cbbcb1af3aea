"""Scoring one long face track: the fusion's members in turn vs side by side, and each member's share.

    python benchmarks/one_track_scoring.py VIDEO [--method stacked] [--rounds 3]

Analyses VIDEO once (``inference.analyse_video``, the default face backend), then times
``inference.synchronise`` of its tracks in fresh method objects, alternating: members in turn
(``AVSYNC_THREADS=1`` for the call) and side by side (the default on two or more cores,
``models.threads.members_side_by_side``). Prints wall and CPU seconds of each run, the answer
(offset, confidence: they must agree), and the seconds each member took when in turn.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("video", type=Path)
    ap.add_argument("--method", default="stacked")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    from avsync.cpu import THREADS_ENV
    from avsync.inference import analyse_audio, analyse_video, synchronise
    from avsync.io import probe
    from avsync.models.registry import create_model

    analysis = analyse_video(args.video, keep_crops=True)
    fps = analysis.rate_fps or probe(args.video).fps
    audio = analyse_audio(args.video)
    synchronise(analysis, audio, fps, create_model(args.method))  # warm-up (imports, first calls)
    print(f"{args.video.name}: {len(analysis.tracks)} track(s), method {args.method}\n\n"
          "| round | members | wall s | CPU s | offset frames | confidence |\n|---|---|---|---|---|---|")
    seconds = None
    for r in range(args.rounds):
        for label, threads in (("in turn", "1"), ("side by side", None)):
            before = os.environ.get(THREADS_ENV)
            if threads:
                os.environ[THREADS_ENV] = threads
            method = create_model(args.method)
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                _, cs = synchronise(analysis, audio, fps, method)
            finally:
                if threads and before is None:
                    del os.environ[THREADS_ENV]
                elif threads:
                    os.environ[THREADS_ENV] = before
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            if threads and hasattr(method, "members"):
                seconds = dict(zip([m.name for m in method.members], method._seconds, strict=True))
            print(f"| {r + 1} | {label} | {wall:.2f} | {cpu:.2f} | {cs.offset_frames:.6f} | "
                  f"{cs.confidence:.6f} |", flush=True)
    if seconds:
        print("\nmember seconds (last run in turn): "
              + ", ".join(f"{k} {v:.2f}" for k, v in seconds.items()))


if __name__ == "__main__":
    main()
