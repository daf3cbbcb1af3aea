"""Train the lip generator and its critics end to end (CPU or GPU), in one call.

    python benchmarks/train_generator.py --cache cache/gen --out runs/gen [--device cuda]
        [--preset small|debug] [--generator-steps N] [--rec-steps N] ...

Needs the generation cache: ``avsync prepare --clips ../shared/data/realclips --out cache/gen
--for generation`` (about 150 MiB, 3 minutes on 2 cores). Writes critics.safetensors,
generator.safetensors, generator_rec.safetensors, curves.json, curves.png and run.json to --out
(see avsync.lipgen.pipeline). ``avsync train generator`` runs the same code.

    python benchmarks/train_generator.py --residual --cache cache/gen --out runs/gen3
        [--steps N] [--max-minutes M] [--lr X] ...

trains the lip generation v3 model instead (avsync.lipgen.residual: a masked residual edit of
the identity image, selected on held-out training speakers by SSIM, PSNR and LMD against the
identity-repeat baseline); writes generator.safetensors only when a checkpoint beat it.
``--residual --tune BUNDLE --out DIR`` then shrinks its edit (edit_scale, chosen on the same
selection clips) -> DIR/generator_scaled.safetensors when a scale beats the baseline.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields, replace
from pathlib import Path

import torch

from avsync.lipgen.pipeline import GenRecipe, train_all
from avsync.lipgen.residual import ResidualRecipe, train_residual, tune_edit_scale


def residual_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description="lip generation v3: masked residual generator")
    ap.add_argument("--residual", action="store_true")
    ap.add_argument("--cache", default="cache/gen")
    ap.add_argument("--out", default="runs/gen3")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--tune", default=None, metavar="BUNDLE",
                    help="no training: choose the edit scale of BUNDLE on the selection clips -> "
                    "OUT/generator_scaled.safetensors, OUT/edit_scale.json")
    ap.add_argument("--blur", type=float, action="append", default=[],
                    help="with --tune: mouth blur sigmas (px) to try with every edit scale")
    for f in fields(ResidualRecipe):
        if f.type in ("int", "float", "str"):
            kind = {"int": int, "float": float, "str": str}[f.type]
            ap.add_argument("--" + f.name.replace("_", "-"), type=kind)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    base = ResidualRecipe.debug() if args.preset == "debug" else ResidualRecipe()
    over = {f.name: getattr(args, f.name) for f in fields(ResidualRecipe)
            if getattr(args, f.name, None) is not None}
    if args.tune:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        recipe = replace(base, **over)
        result = tune_edit_scale(args.tune, args.cache, out / "generator_scaled.safetensors", recipe,
                                 blurs_px=args.blur or (0.0,))
        (out / "edit_scale.json").write_text(json.dumps(result, indent=1))
        print(json.dumps(result["chosen"]))
        return 0
    summary = train_residual(args.cache, args.out, replace(base, **over))
    print(summary["best"])
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--residual" in argv:
        return residual_main(argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default="cache/gen")
    ap.add_argument("--out", default="runs/gen")
    ap.add_argument("--split", default=None, help="split file (default: the realclips split)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--critics", default=None, help="reuse the critics.safetensors of an earlier run")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    for f in fields(GenRecipe):
        if f.type in ("int", "float", "str", int, float, str):
            kind = {"int": int, "float": float, "str": str}.get(f.type, f.type)
            ap.add_argument("--" + f.name.replace("_", "-"), type=kind, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    base = GenRecipe.debug() if args.preset == "debug" else GenRecipe()
    over = {
        f.name: getattr(args, f.name) for f in fields(GenRecipe) if getattr(args, f.name, None) is not None
    }
    recipe = GenRecipe(**{**{f.name: getattr(base, f.name) for f in fields(GenRecipe)}, **over})
    kw = {"split": args.split} if args.split else {}
    if args.critics:
        kw["critics"] = args.critics
    summary = train_all(args.cache, args.out, recipe, device=args.device, **kw)
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
