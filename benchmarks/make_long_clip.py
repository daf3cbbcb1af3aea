"""Build a long test video by looping a real clip N times (memory/speed check of `detect`).

    python benchmarks/make_long_clip.py SRC OUT --times 5
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from avsync.io import iter_video_frames, load_audio, probe, write_av


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("src", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--times", type=int, default=5)
    args = ap.parse_args()
    fps = probe(args.src).fps
    frames = np.stack([f.image for f in iter_video_frames(args.src, max_side=None)])
    audio = load_audio(args.src).samples
    n_audio = int(round(len(frames) / fps * 16000))
    audio = np.pad(audio, (0, max(0, n_audio - len(audio))))[:n_audio]
    write_av(args.out, np.concatenate([frames] * args.times), fps,
             np.concatenate([audio] * args.times), 16000)
    print(f"wrote {args.out}: {len(frames) * args.times} frames")


if __name__ == "__main__":
    main()
