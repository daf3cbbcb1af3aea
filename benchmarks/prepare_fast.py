"""The training cache of ``avsync prepare`` with the face analysis of ``detect --fast``.

    python benchmarks/prepare_fast.py [--clips ../shared/data/realclips] [--out /work/cache/train-fast]
        [--face-backend mediapipe|mesh|mesh-lite] [--no-fast] [--names-from /work/cache/train]

(``--face-backend mesh --no-fast``: every frame landmarked by face.mesh instead of MediaPipe's
graph, the other front end compared on the cross-validation; ``mesh-lite``: the older, lighter
mesh of benchmarks/lite_mesh.py, an experiment.)

Same clips, same file names as the default cache, only the landmarks differ (every other frame,
interpolated between): ``benchmarks/cv.py --variant fast --heldout-cache OUT`` scores the
held-out folds on it with the models trained on the default cache. One process (the face
analysis of each clip uses the threads allowed).
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import avsync.inference  # noqa: E402
from avsync.data import build_cache  # noqa: E402
from avsync.evaluation.clips import load_clips  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=Path, default=Path("../shared/data/realclips"))
    ap.add_argument("--out", type=Path, default=Path("/work/cache/train-fast"))
    ap.add_argument("--face-backend", default="mediapipe")
    ap.add_argument("--no-fast", action="store_true", help="landmarks on every frame")
    ap.add_argument("--names-from", type=Path, default=None,
                    help="also link OUT's files into OUT-named under this cache's file names, matched by "
                         "the clip path stored in each (cache names hash the clips' mtimes, which move "
                         "when the shared clips are copied again); cv.py --heldout-cache OUT-named")
    args = ap.parse_args()
    if args.face_backend == "mesh-lite":
        from lite_mesh import use_lite_backend

        use_lite_backend()
    avsync.inference.analyse_video = functools.partial(avsync.inference.analyse_video,
                                                       fast=not args.no_fast,
                                                       face_backend=args.face_backend)
    paths = build_cache(load_clips(args.clips), args.out, workers=1, progress=False)
    print(f"cached {len(paths)} clips in {args.out}")
    if args.names_from is not None:
        link_under_names(args.out, args.names_from, args.out.with_name(args.out.name + "-named"))


def link_under_names(new: Path, base: Path, out: Path) -> None:
    """Symlink each cache file of ``new`` into ``out`` under the name ``base`` has for its clip."""
    import numpy as np

    def clip(f: Path) -> str:
        with np.load(f, allow_pickle=True) as z:
            return str(z["path"])

    names = {clip(f): f.name for f in base.glob("*.npz")}
    out.mkdir(exist_ok=True)
    linked = 0
    for f in sorted(new.glob("*.npz")):
        name = names.get(clip(f))
        if name is not None:
            dest = out / name
            dest.unlink(missing_ok=True)
            dest.symlink_to(f.resolve())
            linked += 1
    print(f"linked {linked} of them into {out} under {base}'s names")


if __name__ == "__main__":
    main()
