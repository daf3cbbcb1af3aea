"""Where do the cores idle during one ``detect``? CPU in use over time, in half-second bins.

    python benchmarks/cpu_timeline.py VIDEO [--method NAME] [--bin-s 0.5]

Samples the process's user + system CPU time (``/proc/self/stat``, Linux) every 0.1 s while
``inference.detect`` runs (imports included, as in a fresh ``avsync detect``) and prints, per
bin, the cores in use on average (2.00 = both of a 2-core machine busy), then the stage times
``detect`` reports. A bin near 1.0 on a 2-core machine is a stretch where one core waits.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def cpu_s() -> float:
    """User + system CPU seconds of this process so far (all threads)."""
    with open("/proc/self/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("video", type=Path)
    ap.add_argument("--method", default=None, help="default: the package's default")
    ap.add_argument("--bin-s", type=float, default=0.5)
    args = ap.parse_args()
    samples: list[tuple[float, float]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append((time.perf_counter(), cpu_s()))
            time.sleep(0.1)

    t0 = time.perf_counter()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    from avsync.inference import DEFAULT_METHOD, detect

    result = detect(args.video, method=args.method or DEFAULT_METHOD)
    done.set()
    sampler.join()
    wall = time.perf_counter() - t0
    bins: dict[int, list[float]] = {}
    for (ta, ca), (tb, cb) in zip(samples, samples[1:], strict=False):
        acc = bins.setdefault(int((ta - t0) / args.bin_s), [0.0, 0.0])
        acc[0] += cb - ca
        acc[1] += tb - ta
    print(f"{args.video.name}: {wall:.2f} s wall, {cpu_s():.1f} CPU-s, stages {result.timings_s}")
    print("cores in use, per bin (start s: cores):")
    print(" ".join(f"{b * args.bin_s:.1f}:{c / w:.2f}" for b, (c, w) in sorted(bins.items()) if w > 0))


if __name__ == "__main__":
    main()
