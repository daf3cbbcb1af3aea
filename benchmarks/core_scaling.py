"""How much two busy cores of this machine slow each other, outside any batch machinery.

    python benchmarks/core_scaling.py [--work detect|loop] [--seconds 15] [--rounds 3] [--clip FILE]

One process pinned to a core runs the work repeatedly for ``--seconds`` alone; then two identical
processes, pinned to two different cores, run it at the same time. Each reports the median CPU
seconds per iteration (its own ``process_time``, so waiting for a core does not count). The
ratio pair / alone is the per-input CPU inflation that two batch workers pay on this machine
(shared caches, memory bandwidth, the host's clock and neighbours); 2 / that ratio bounds the
2-vs-1-worker speed-up of any batch engine here. Rounds alternate alone / pair so a drifting
machine loads both alike. ``--work detect``: ``avsync.inference.detect`` on one real clip (the
shipped GRID example) with the default method, one thread (a batch worker's work); ``loop``: a
pure-Python integer loop (the reference: almost no memory traffic). Linux only (CPU affinity).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CLIP = ROOT / "examples" / "grid_bbaf2n.mp4"
"""The shipped 3 s GRID example (a real clip)."""


def child(core: int, seconds: float, work: str, clip: str) -> None:
    os.sched_setaffinity(0, {core})
    os.environ.update(AVSYNC_THREADS="1", OMP_NUM_THREADS="1")
    if work == "detect":
        import torch

        torch.set_num_threads(1)
        from avsync.inference import detect
        from avsync.models.registry import DEFAULT_METHOD, create_model

        model = create_model(DEFAULT_METHOD)

        def fn() -> None:
            detect(clip, method=model)
        fn()  # warm-up
    else:
        def fn() -> None:
            x = 0
            for i in range(3_000_000):
                x += i * i
    print("ready", flush=True)
    sys.stdin.readline()
    end, cpu = time.perf_counter() + seconds, []
    while time.perf_counter() < end:
        c0 = time.process_time()
        fn()
        cpu.append(time.process_time() - c0)
    print(json.dumps(cpu), flush=True)


def run(n: int, args) -> list[float]:
    """Median CPU s per iteration of each of n processes started together on cores 0..n-1."""
    cores = sorted(os.sched_getaffinity(0))[:n]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    cmd = [sys.executable, __file__, "--child", "--seconds", str(args.seconds), "--work", args.work,
           "--clip", str(args.clip)]
    procs = [subprocess.Popen([*cmd, "--core", str(c)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, env=env) for c in cores]
    for p in procs:
        if p.stdout.readline().strip() != "ready":
            raise SystemExit("a child failed to start")
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    out = [statistics.median(json.loads(p.stdout.readline())) for p in procs]
    for p in procs:
        p.wait()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", choices=("detect", "loop"), default="detect")
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--core", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.core, args.seconds, args.work, str(args.clip))
        return
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("needs two usable cores")
    print("| work | round | alone: CPU s per iteration | pair: CPU s per iteration (each) | pair / alone |\n"
          "|---|---|---|---|---|", flush=True)
    ratios = []
    for r in range(args.rounds):
        alone, pair = run(1, args)[0], run(2, args)
        ratios.append(statistics.mean(pair) / alone)
        print(f"| {args.work} | {r + 1} | {alone:.3f} | {pair[0]:.3f} / {pair[1]:.3f} | {ratios[-1]:.3f} |",
              flush=True)
    print(f"\nmedian inflation {statistics.median(ratios):.3f} (range {min(ratios):.3f}-{max(ratios):.3f}): "
          f"2 workers can give at most {2 / statistics.median(ratios):.2f}x one worker here")


if __name__ == "__main__":
    main()
