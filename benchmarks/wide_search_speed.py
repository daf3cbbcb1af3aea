"""The wide search's cost on one file: with no peak winning, and with a planted large offset.

    python benchmarks/wide_search_speed.py VIDEO [--method NAME] [--moves 50,-40] [--out answers.pkl]
    PYTHONPATH=/tmp/ref/src python benchmarks/wide_search_speed.py VIDEO ...   # another version

Analyses VIDEO once (mouth crops kept), then times ``search.synchronise_wide`` with a +-5 s
range (``max_offset_ms=5000``: the search runs whatever the confidence) on the file's audio
("plain": the normal answer usually stands) and on its audio moved by each of ``--moves``
frames (a coarse peak wins), each with a fresh method. Prints seconds, the answer and the
coarse peaks; ``--out`` pickles every answer (tracks with drift, curve, search record) so two
versions' outputs can be compared exactly.
"""

from __future__ import annotations

import argparse
import dataclasses
import pickle
import sys
import time
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1] / "src"))  # after PYTHONPATH's code


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("video", type=Path)
    ap.add_argument("--method", default=None, help="default: the package's default")
    ap.add_argument("--moves", default="50,-40", help="audio moves in frames, comma-separated")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    from avsync import search
    from avsync.inference import DEFAULT_METHOD, analyse_audio, analyse_video, create_model
    from avsync.io import probe

    method = args.method or DEFAULT_METHOD
    analysis = analyse_video(args.video, keep_crops=True)
    fps = analysis.rate_fps or probe(args.video).fps
    audio = analyse_audio(args.video)
    search.synchronise_wide(analysis, audio, fps, create_model(method), 15, True, 5000.0)  # warm-up
    moves = [int(m) for m in args.moves.split(",")] if args.moves else []
    cases = [("plain", 0)] + [(f"moved {m:+d}", m) for m in moves]
    answers = {}
    import avsync

    print(f"code: {Path(avsync.__file__).parent}\n\n| case | s | offset frames | confidence | "
          "coarse peaks ms | answer's centre ms |\n|---|---|---|---|---|---|")
    for label, move in cases:
        moved = search.delayed(audio, move, fps) if move else audio
        t0 = time.perf_counter()
        tracks, cs, wide = search.synchronise_wide(analysis, moved, fps, create_model(method), 15, True,
                                                   5000.0)
        seconds = time.perf_counter() - t0
        answers[label] = ([dataclasses.asdict(t) for t in tracks], cs.offset_frames, cs.confidence,
                          list(cs.scores), wide)
        print(f"| {label} | {seconds:.2f} | {cs.offset_frames:.6f} | {cs.confidence:.9f} | "
              f"{wide.coarse_peaks_ms} | {wide.centre_ms} |", flush=True)
    if args.out:
        with open(args.out, "wb") as fh:
            pickle.dump(answers, fh)


if __name__ == "__main__":
    main()
