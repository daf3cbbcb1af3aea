"""Lip generation v2 levers (issue 15) on held-out speakers -> OUT/levers.json, a markdown table.

    python benchmarks/lipgen_levers.py --cache cache/gen --out runs/levers [--limit N]
        [--gain G | --no-motion] [--reference PAPER.safetensors] [--generator NAME=BUNDLE ...]

1. The lip-motion model (avsync.lipgen.motion): ridge regression from speech to lip-landmark
   motion, then a thin-plate-spline warp of the identity image. Its gain is chosen on a quarter
   of the TRAINING speakers (fit on the other three quarters) by LMD; the ridge strength by the
   lip-point error on speakers held out inside the fit. The test speakers are not looked at.
2. Then, on the validation clips of the speaker-disjoint split (the test set of
   benchmarks/generation.py): ground truth, the identity image repeated, the shipped generator
   (Chen et al. 2018 architecture; the reference row) and the motion model fitted on all
   training speakers; LMD by the shipped landmark network, SSIM, PSNR, CPBD, LSE by our SyncNet.
   ``--gain`` skips the gain selection (a gain chosen by an earlier run), ``--no-motion`` the
   motion model; ``--reference`` is the paper-architecture generator (default: the shipped
   one), ``--generator NAME=BUNDLE`` adds rows (lip generation v3: ``--generator
   "masked residual=runs/gen3/generator.safetensors"``). LMD always uses the landmark network
   of the reference bundle.
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
from avsync.lipgen.generate import PAPER_GENERATOR
from avsync.lipgen.motion import (
    clip_targets,
    fit_motion,
    frame_features,
    motion_frames,
    save_motion,
    soften_mouth,
)
from avsync.lipgen.windows import load_gen_clip
from avsync.models.registry import create_model

GAINS = (0.5, 1.0, 1.5, 2.0)


def motion_maker(model, gain: float, blur_px: float = 0.0):
    def make(clip, ident, _logmel):
        ok = np.flatnonzero(clip.valid)
        frames = motion_frames(model, clip.audio, clip.row0, ident, clip.lips[ok[0]], int(ok[0]), gain)
        return soften_mouth(frames, blur_px)

    return make


def motion_lever(train: list[Path], nets: dict, args: argparse.Namespace):
    """(selection result, {row name: maker}) of the motion model fitted on all training speakers;
    its gain chosen on a quarter of them (fit on the others) unless ``args.gain`` is given."""
    data, files = [], []
    for f in train:
        c = load_gen_clip(f)
        ok = c.valid & (c.row0 >= 0)
        if ok.sum() >= 16:
            data.append((frame_features(c.audio, c.row0)[ok], clip_targets(c.lips, c.valid)[ok], c.speaker))
            files.append(f)
    result: dict = {"train_clips": len(data)}
    if args.gain is None:
        speakers = sorted({s for _, _, s in data})
        sel = set(np.random.default_rng(1).choice(speakers, len(speakers) // 4, replace=False).tolist())
        m_sel, _ = fit_motion([d for d in data if d[2] not in sel])
        makers = {"identity image repeated": repeat_maker,
                  **{f"gain {g}": motion_maker(m_sel, g) for g in GAINS}}
        sel_files = [f for f, d in zip(files, data, strict=True) if d[2] in sel]
        sel_rows = (evaluate_clip(f, makers, nets["landmarks"]) for f in sel_files)
        sel_table = aggregate([c for c in sel_rows if c])
        gain = min(GAINS, key=lambda g: sel_table[f"gain {g}"]["lmd"])
        result.update(selection=sel_table, selection_speakers=sorted(sel), selection_clips=len(sel_files))
        print(f"selection ({len(sel_files)} clips of {len(sel)} training speakers, fit on the others):")
        print(markdown_table(sel_table, list(sel_table)))
    else:
        gain = args.gain
    model, fit = fit_motion(data)
    save_motion(args.out / "lipmotion.safetensors", model, {**fit, "gain": gain})
    result.update(gain=gain, fit=fit)
    rows = {f"landmark motion + TPS warp (gain {gain}; deviation, ours)": motion_maker(model, gain)}
    for b in args.blur:
        rows[f"landmark motion + TPS warp (gain {gain}) + mouth blur {b} px"] = motion_maker(model, gain, b)
    return result, rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=Path("cache/gen"))
    ap.add_argument("--out", type=Path, default=Path("runs/levers"))
    ap.add_argument("--limit", type=int, default=0, help="only the first N test clips")
    ap.add_argument("--gain", type=float, default=None, help="motion gain (skips its selection)")
    ap.add_argument("--no-motion", action="store_true", help="no motion-model row")
    ap.add_argument("--blur", type=float, action="append", default=[],
                    help="also the motion row with its mouth blurred by this sigma (px)")
    ap.add_argument("--no-reference", action="store_true", help="no row for the --reference generator")
    ap.add_argument("--reference", type=Path, default=PAPER_GENERATOR,
                    help="the paper-architecture generator bundle (its landmark net scores LMD)")
    ap.add_argument("--generator", action="append", default=[], metavar="NAME=BUNDLE",
                    help="another generator row")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    train, test = split_cache_files(sorted(args.cache.glob("*.npz")))
    test = test[: args.limit or None]
    nets, _ = load_bundle(args.reference)
    result: dict = {}
    makers = {"ground truth": truth_maker, "identity image repeated": repeat_maker}
    if not args.no_reference:
        makers["paper architecture (Chen et al. 2018, ours)"] = generator_maker(nets["generator"])
    if not args.no_motion:
        result, rows = motion_lever(train, nets, args)
        makers.update(rows)
    for spec in args.generator:
        name, _, path = spec.partition("=")
        makers[name] = generator_maker(load_bundle(path, ("generator",))[0]["generator"])
    sync = create_model("syncnet")
    t0 = time.perf_counter()
    per_clip = []
    for f in test:
        per_clip.append(evaluate_clip(f, makers, nets["landmarks"], sync))
        print(f"{f.name}: {time.perf_counter() - t0:.0f} s", flush=True)
    table = aggregate([c for c in per_clip if c])
    result.update(table=table, per_clip=per_clip, eval_s=time.perf_counter() - t0, test_clips=len(test),
                  test_files=[f.name for f in test])
    (args.out / "levers.json").write_text(json.dumps(result, indent=1, default=float))
    print(markdown_table(table, list(makers)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
