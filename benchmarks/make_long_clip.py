"""Build a long test video by looping real clips (memory/speed check of ``detect`` on long inputs).

    python benchmarks/make_long_clip.py OUT SRC [SRC ...] --minutes 60

The sources are repeated in turn until the duration is reached and joined by the ffmpeg concat
demuxer with stream copy (no re-encode, no frames in memory: an hour takes seconds), so the
sources must share codecs, size and frame rate (several cuts of one recording, or one clip).
Write the output outside the repository (e.g. /work/cache/<name>/).
"""

from __future__ import annotations

import argparse
import math
import subprocess
from pathlib import Path

from avsync.io import probe


def make_long(sources: list[Path], out: Path, minutes: float) -> int:
    """Loop ``sources`` into ``out`` until it lasts at least ``minutes``; returns the parts used."""
    cycle_s = sum(probe(s).duration_s for s in sources)
    parts = [sources[i % len(sources)] for i in range(len(sources) * math.ceil(minutes * 60 / cycle_s))]
    total, kept = 0.0, []
    for p in parts:  # stop at the first part that reaches the duration
        if total >= minutes * 60 - 0.5:
            break
        kept.append(p)
        total += probe(p).duration_s
    listing = out.with_suffix(".txt")
    listing.write_text("".join(f"file '{p.resolve()}'\n" for p in kept))
    try:
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing),
                        "-c", "copy", str(out)], check=True)
    finally:
        listing.unlink()
    return len(kept)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("src", type=Path, nargs="+")
    ap.add_argument("--minutes", type=float, default=60.0)
    args = ap.parse_args()
    n = make_long(args.src, args.out, args.minutes)
    print(f"wrote {args.out}: {n} parts, {probe(args.out).duration_s:.1f} s")


if __name__ == "__main__":
    main()
