"""Seconds per window of a pair model's video tower at several batch sizes (CPU, one thread).

    python benchmarks/tower_batch.py [--method c3] [--windows 1024]

Why ``models.pair_scoring.TOWER_BATCH`` is small: a 3D convolution's activations for a batch of
hundreds of windows leave the CPU's caches. Random inputs of the tower's shape; the shipped
weights of ``--method``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", default="c3")
    ap.add_argument("--windows", type=int, default=1024)
    ap.add_argument("--batches", type=int, nargs="+", default=[8, 16, 32, 64, 128, 256, 512])
    args = ap.parse_args()
    import torch

    from avsync.models.registry import create_model

    torch.set_num_threads(1)
    net = create_model(args.method).model.eval()
    cfg = net.config
    side = getattr(cfg, "flow_size", 48)
    x = torch.randn(args.windows, cfg.frames, side, side)
    print(f"{args.method} video tower, input (B, {cfg.frames}, {side}, {side}), "
          f"{args.windows} windows, 1 thread")
    print("| batch | ms per window |\n|---|---|")
    with torch.no_grad():
        net.encode_video(x[:8])  # warm-up
        for bs in args.batches:
            t0 = time.perf_counter()
            for i in range(0, args.windows, bs):
                net.encode_video(x[i:i + bs])
            print(f"| {bs} | {(time.perf_counter() - t0) / args.windows * 1000:.3f} |")


if __name__ == "__main__":
    main()
