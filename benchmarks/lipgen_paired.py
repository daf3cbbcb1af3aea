"""Paired gains of a generator over the identity image repeated, per test clip (issue 15).

    python benchmarks/lipgen_paired.py RUN/levers.json "ROW NAME" [--cache cache/gen --first-frame-cpbd]

Reads the ``per_clip`` rows that ``benchmarks/lipgen_levers.py`` writes and prints, for SSIM, PSNR
and LMD (as a reduction), the frame-weighted mean gain over the identity row, its 95 % bootstrap
interval over the clips (5,000 resamples, seed 0) and how many clips are better.
``--first-frame-cpbd`` also prints, per test clip of the generation cache, the CPBD of the first
detected frame (the identity image) against the mean over the next 99 frames.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

BASELINE = "identity image repeated"


def paired_gains(levers: dict, row: str, resamples: int = 5000, seed: int = 0) -> dict[str, dict]:
    """{metric: {"gain", "low", "high", "better", "clips"}} of ``row`` over the identity row."""
    rows = levers["per_clip"]
    w = np.array([r[BASELINE]["frames"] for r in rows], np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(rows), (resamples, len(rows)))
    out = {}
    for key, sign in (("ssim", 1.0), ("psnr", 1.0), ("lmd", -1.0)):
        diff = sign * np.array([r[row][key] - r[BASELINE][key] for r in rows])
        boots = (diff[draws] * w[draws]).sum(1) / w[draws].sum(1)
        low, high = np.percentile(boots, [2.5, 97.5])
        out[key] = {"gain": float(np.average(diff, weights=w)), "low": float(low), "high": float(high),
                    "better": int((diff > 0).sum()), "clips": len(rows)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("levers", type=Path)
    ap.add_argument("row")
    ap.add_argument("--cache", type=Path, default=Path("cache/gen"))
    ap.add_argument("--first-frame-cpbd", action="store_true")
    args = ap.parse_args(argv)
    levers = json.loads(args.levers.read_text())
    for key, g in paired_gains(levers, args.row).items():
        print(f"{key}: {g['gain']:+.4f} [{g['low']:+.4f}, {g['high']:+.4f}], "
              f"{g['better']} of {g['clips']} clips better")
    if args.first_frame_cpbd:
        from avsync.lipgen.metrics import cpbd, cpbd_video
        from avsync.lipgen.windows import load_gen_clip

        sharper = 0
        for name in levers["test_files"]:
            clip = load_gen_clip(args.cache / name)
            ok = np.flatnonzero(clip.valid)[:100]
            first, rest = cpbd(clip.rgb[ok[0]]), cpbd_video(clip.rgb[ok[1:]])
            sharper += first > rest
            print(f"{name}: first frame {first:.3f}, next 99 {rest:.3f}")
        print(f"first frame sharper in {sharper} of {len(levers['test_files'])} clips")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
