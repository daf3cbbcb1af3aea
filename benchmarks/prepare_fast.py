"""The training cache of ``avsync prepare`` with the face analysis of ``detect --fast``.

    python benchmarks/prepare_fast.py [--clips ../shared/data/realclips] [--out /work/cache/train-fast]
        [--face-backend mediapipe|mesh] [--no-fast]

(``--face-backend mesh --no-fast``: every frame landmarked by face.mesh instead of MediaPipe's
graph, the other front end compared on the cross-validation.)

Same clips, same file names as the default cache, only the landmarks differ (every other frame,
interpolated between): ``benchmarks/cv.py --variant fast --heldout-cache OUT`` scores the
held-out folds on it with the models trained on the default cache. One process (the face
analysis of each clip uses the threads allowed).
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

import avsync.inference
from avsync.data import build_cache
from avsync.evaluation.clips import load_clips


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=Path, default=Path("../shared/data/realclips"))
    ap.add_argument("--out", type=Path, default=Path("/work/cache/train-fast"))
    ap.add_argument("--face-backend", default="mediapipe")
    ap.add_argument("--no-fast", action="store_true", help="landmarks on every frame")
    args = ap.parse_args()
    avsync.inference.analyse_video = functools.partial(avsync.inference.analyse_video,
                                                       fast=not args.no_fast,
                                                       face_backend=args.face_backend)
    paths = build_cache(load_clips(args.clips), args.out, workers=1, progress=False)
    print(f"cached {len(paths)} clips in {args.out}")


if __name__ == "__main__":
    main()
