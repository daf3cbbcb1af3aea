"""End-to-end speed of `detect` on CPU: seconds per minute of video, split by stage.

    python benchmarks/speed.py FILE [FILE ...] [--threads 2]

Stages: decode (PyAV, threaded), face (landmarks + tracking + mouth signals), audio (decode +
features), scoring (curves, null distribution for the confidence, drift windows).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import time
from pathlib import Path

from avsync.inference import detect


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--method", default="avcorr")
    args = ap.parse_args()
    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{datetime.date.today().isoformat()}, method {args.method}\n")
    print("| file | duration s | fps | wall s | s per min of video | decode | face | audio | "
          "scoring | x real time | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for f in args.files:
        t0 = time.perf_counter()
        r = detect(f, method=args.method)
        wall = time.perf_counter() - t0
        per_min = 60.0 / r.duration_s
        t = r.timings_s
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"| {f.name} | {r.duration_s:.1f} | {r.fps:g} | {wall:.1f} | {wall * per_min:.1f} | "
              f"{t.get('decode', 0) * per_min:.1f} | {t.get('face', 0) * per_min:.1f} | "
              f"{t.get('audio', 0) * per_min:.1f} | {t.get('scoring', 0) * per_min:.1f} | "
              f"{r.duration_s / wall:.2f} | {rss:.0f} |", flush=True)


if __name__ == "__main__":
    main()
