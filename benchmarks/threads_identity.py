"""One thread against two, in one process: scoring time and face-analysis identity (issue 14).

    python benchmarks/threads_identity.py scoring FILE [--rounds 3] [--method stacked]
    python benchmarks/threads_identity.py analysis FILE [FILE ...]

``scoring``: the file's face analysis once, then its scoring (``search.synchronise_wide``,
+-15 frames, drift on) with ``AVSYNC_THREADS`` 1 and 2 alternating, a fresh method each time
(cold caches, as in ``detect``); prints wall and CPU seconds and whether the curves and
per-track results of the two thread counts are identical.

``analysis``: ``analyse_video`` (keep_crops) of each file with one thread and with two
(face.chunks when the file allows it: the number of chunks is printed); prints the times and
whether frames, cuts, tracks, signals and mouth crops are identical.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np


def _threads(n: int) -> None:
    os.environ["AVSYNC_THREADS"] = str(n)


def scoring(path: Path, rounds: int, method: str) -> None:
    from avsync import inference, search
    from avsync.models.registry import create_model

    _threads(1)
    analysis = inference.analyse_video(path, keep_crops=True)
    audio = inference.analyse_audio(path, logmel=True)
    fps = inference.probe(path).fps
    print(f"{path.name}: {len(analysis.tracks)} tracks, {analysis.n_frames} frames")
    seen: dict[int, tuple] = {}
    for r in range(rounds):
        for n in (1, 2):
            _threads(n)
            model = create_model(method)
            t, c = time.perf_counter(), time.process_time()
            tracks, cs, _ = search.synchronise_wide(analysis, audio, fps, model, 15, True, None, None)
            wall, cpu = time.perf_counter() - t, time.process_time() - c
            seen[n] = (cs.scores.copy(), [(x.offset_frames, x.confidence, x.drift) for x in tracks])
            print(f"round {r + 1} threads {n}: scoring {wall:.2f} s wall, {cpu:.2f} s CPU; "
                  f"offset {cs.offset_frames:+.4f}, confidence {cs.confidence:.4f}")
    same = np.array_equal(seen[1][0], seen[2][0]) and seen[1][1] == seen[2][1]
    print("curves and per-track results identical:", same)


def analysis(paths: list[Path]) -> None:
    from avsync.inference import analyse_video

    for path in paths:
        out, info = {}, []
        for n in (1, 2):
            _threads(n)
            clock: dict = {}
            t = time.perf_counter()
            out[n] = analyse_video(path, keep_crops=True, clock=clock)
            info.append(f"{n} thread(s) {time.perf_counter() - t:.1f} s, chunks {clock.get('chunks', 1):.0f}")
        a, b = out[1], out[2]
        same = (a.n_frames == b.n_frames and a.cuts == b.cuts and a.image_size == b.image_size
                and np.array_equal(a.frame_times_s, b.frame_times_s) and len(a.tracks) == len(b.tracks))
        for x, y in zip(a.tracks, b.tracks, strict=False):
            same = same and x.frame_index == y.frame_index and np.array_equal(
                x.signal_matrix(), y.signal_matrix()) and all(
                np.array_equal(m, k) for m, k in zip(x.mouth, y.mouth, strict=True))
        print(f"{path.name}: {a.n_frames} frames; {'; '.join(info)}; identical: {same}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["scoring", "analysis"])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--method", default="stacked")
    args = ap.parse_args(argv)
    if args.what == "scoring":
        for p in args.files:
            scoring(p, args.rounds, args.method)
    else:
        analysis(args.files)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
