"""Lip generation v2 levers (issue 15) on held-out speakers -> OUT/levers.json, a markdown table.

    python benchmarks/lipgen_levers.py --cache cache/gen --out runs/levers [--limit N]

1. The lip-motion model (avsync.lipgen.motion): ridge regression from speech to lip-landmark
   motion, then a thin-plate-spline warp of the identity image. Its gain is chosen on a quarter
   of the TRAINING speakers (fit on the other three quarters) by LMD; the ridge strength by the
   lip-point error on speakers held out inside the fit. The test speakers are not looked at.
2. Then, on the validation clips of the speaker-disjoint split (the test set of
   benchmarks/generation.py): ground truth, the identity image repeated, the shipped generator
   (Chen et al. 2018 architecture; the reference row) and the motion model fitted on all
   training speakers; LMD by the shipped landmark network, SSIM, PSNR, CPBD, LSE by our SyncNet.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from avsync.data import split_cache_files
from avsync.lipgen.bundle import load_bundle
from avsync.lipgen.evaluate import (
    aggregate,
    evaluate_clip,
    generator_maker,
    markdown_table,
    repeat_maker,
    truth_maker,
)
from avsync.lipgen.generate import DEFAULT_GENERATOR
from avsync.lipgen.motion import clip_targets, fit_motion, frame_features, motion_frames, save_motion
from avsync.lipgen.windows import load_gen_clip
from avsync.models.registry import create_model

GAINS = (0.5, 1.0, 1.5, 2.0)


def motion_maker(model, gain: float):
    def make(clip, ident, _logmel):
        ok = np.flatnonzero(clip.valid)
        return motion_frames(model, clip.audio, clip.row0, ident, clip.lips[ok[0]], int(ok[0]), gain)

    return make


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=Path("cache/gen"))
    ap.add_argument("--out", type=Path, default=Path("runs/levers"))
    ap.add_argument("--limit", type=int, default=0, help="only the first N test clips")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    train, test = split_cache_files(sorted(args.cache.glob("*.npz")))
    test = test[: args.limit or None]
    data, files = [], []
    for f in train:
        c = load_gen_clip(f)
        ok = c.valid & (c.row0 >= 0)
        if ok.sum() >= 16:
            data.append((frame_features(c.audio, c.row0)[ok], clip_targets(c.lips, c.valid)[ok], c.speaker))
            files.append(f)
    nets, _ = load_bundle(DEFAULT_GENERATOR)
    speakers = sorted({s for _, _, s in data})
    sel = set(np.random.default_rng(1).choice(speakers, len(speakers) // 4, replace=False).tolist())
    m_sel, _ = fit_motion([d for d in data if d[2] not in sel])
    makers = {"identity image repeated": repeat_maker, **{f"gain {g}": motion_maker(m_sel, g) for g in GAINS}}
    sel_files = [f for f, d in zip(files, data, strict=True) if d[2] in sel]
    sel_table = aggregate([c for c in (evaluate_clip(f, makers, nets["landmarks"]) for f in sel_files) if c])
    gain = min(GAINS, key=lambda g: sel_table[f"gain {g}"]["lmd"])
    model, fit = fit_motion(data)
    save_motion(args.out / "lipmotion.safetensors", model, {**fit, "gain": gain})
    motion_row = f"landmark motion + TPS warp (gain {gain}; deviation, ours)"
    makers = {"ground truth": truth_maker, "identity image repeated": repeat_maker,
              "shipped generator (Chen et al. 2018 architecture, ours)": generator_maker(nets["generator"]),
              motion_row: motion_maker(model, gain)}
    sync = create_model("syncnet")
    t0 = time.perf_counter()
    per_clip = [evaluate_clip(f, makers, nets["landmarks"], sync) for f in test]
    table = aggregate([c for c in per_clip if c])
    result = {"selection": sel_table, "selection_speakers": sorted(sel), "selection_clips": len(sel_files),
              "gain": gain, "fit": fit, "table": table, "per_clip": per_clip,
              "eval_s": time.perf_counter() - t0, "train_clips": len(data), "test_clips": len(test)}
    (args.out / "levers.json").write_text(json.dumps(result, indent=1, default=float))
    print(f"selection ({len(sel_files)} clips of {len(sel)} training speakers, fit on the others):")
    print(markdown_table(sel_table, list(sel_table)))
    print(f"\nchosen gain {gain}; fit on all {len(data)} training clips: {fit}\n")
    print(markdown_table(table, list(makers)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
