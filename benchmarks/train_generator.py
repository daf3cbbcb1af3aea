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

ROOT = Path(__file__).resolve().parents[1]


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
    ap.add_argument("--ship", default=None, metavar="BUNDLE",
                    help="no training: write BUNDLE (a selected generator.safetensors) to "
                    "src/avsync/weights/generator.safetensors (float16) with its card; needs --test")
    ap.add_argument("--test", default=None, metavar="LEVERS_JSON",
                    help="with --ship: benchmarks/lipgen_levers.py's levers.json that scored BUNDLE")
    ap.add_argument("--row", default=None, help="with --ship: BUNDLE's row name in --test")
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
    if args.ship:
        if not args.test or not args.row:
            ap.error("--ship needs --test and --row")
        print(ship_residual(Path(args.ship), Path(args.test), args.row))
        return 0
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


CARD_ROWS = ("ground truth", "identity image repeated", "paper architecture (Chen et al. 2018, ours)")


def ship_residual(bundle: Path, test_json: Path, row: str) -> Path:
    """src/avsync/weights/generator.safetensors (+ generator.md) from a selected residual bundle:
    float16, with its selection metrics, recipe and the held-out test row it was scored with."""
    from avsync.lipgen.bundle import load_bundle, save_bundle
    from avsync.lipgen.evaluate import markdown_table

    for path in (bundle, test_json):
        if not path.is_file():
            raise SystemExit(f"{path}: no such file")
    nets, meta = load_bundle(bundle)
    metrics = meta["metrics"]
    if "selection" not in metrics:
        raise SystemExit(f"{bundle}: not a selected residual generator (no selection metrics)")
    test = json.loads(test_json.read_text())
    if row not in test.get("table", {}):
        raise SystemExit(f"{test_json}: no row {row!r} (rows: {', '.join(test.get('table', {}))})")
    table = {k: test["table"][k] for k in (*CARD_ROWS, row) if k in test["table"]}
    out = ROOT / "src" / "avsync" / "weights" / "generator.safetensors"
    save_bundle(out, {k: nets[k] for k in ("generator", "landmarks", "flow")},
                {**metrics, "test": test["table"][row], "test_clips": test["test_clips"]}, half=True)
    r, sel, base = metrics["recipe"], metrics["selection"], metrics["selection_identity"]
    cfg = nets["generator"].config
    tuned = ""
    if metrics.get("tune"):
        pick = max(metrics["tune"], key=lambda t: t["score"])
        tuned = (f" Then `--tune` (edit scale x mouth blur on the same selection clips) chose edit x "
                 f"{cfg.edit_scale:g} with a {cfg.mouth_blur_px:g} px mouth blur: SSIM {pick['ssim']:.4f}, "
                 f"PSNR {pick['psnr']:.3f} dB, LMD {pick['lmd']:.4f} px.")
    params = sum(p.numel() for p in nets["generator"].parameters())
    flags = " ".join(f"--{k.replace('_', '-')} {r[k]}" for k in ("steps", "ema", "val_every", "seed")
                     if k in r)
    card = f"""# Model card: `generator` (lip movements from speech + one lip image)

- **Architecture**: the masked residual edit of the identity image (`avsync.lipgen.residual`):
  the Chen et al. 2018 encoders (log-mel 64 x 40 + one 64 x 64 RGB lip image) with a
  resize-convolution decoder at half resolution whose last layer edits the identity image inside
  a soft mouth mask and starts at zero, so that an untrained model *is* the identity image
  repeated ({params:,} parameters). Deviations from the paper: the residual edit, the mask, the
  decoder, no adversarial or perceptual loss (mouth-weighted L1 + MSE), the weights' moving
  average (decay {r.get("ema")}). The paper's model ships beside it as the reference
  (`generator_paper.safetensors`). The file also holds the lip landmark network (LMD) and the
  distilled flow network of the paper model's run, float16.
- **Use**: `avsync generate --audio SPEECH --image FACE_OR_LIPS.png -o out.mp4`; dubbing:
  `avsync generate --video FACE.mp4 --audio NEW.wav -o out.mp4`; metrics: `avsync metrics out.mp4`.
- **Data**: the training split of `src/avsync/data/realclips_split.jsonl`
  (`../shared/data/realclips`; mouth crops by `avsync prepare --for generation`), minus 30 % of
  its speaker groups held out for model selection.
- **Recipe**: `python benchmarks/train_generator.py --residual --cache cache/gen --out runs/gen4
  {flags}` (batch {r["batch_size"]}, Adam lr {r["lr"]}, flips and brightness jitter; how the run
  went: docs/BENCHMARKS.md "Lip generation v4"); selected checkpoint: **step {metrics["step"]}**,
  the best of the evaluations every {r["val_every"]} steps on the held-out *training* speakers
  (the test speakers were not looked at).
  Selection clips: SSIM {sel["ssim"]:.4f} vs {base["ssim"]:.4f} for the identity repeated, PSNR
  {sel["psnr"]:.3f} vs {base["psnr"]:.3f} dB, LMD {sel["lmd"]:.4f} vs {base["lmd"]:.4f} px.{tuned}
- **Measured** on the {test["test_clips"]} held-out-speaker validation clips (`python
  benchmarks/lipgen_levers.py --no-motion --generator NAME=BUNDLE`; docs/BENCHMARKS.md "Lip
  generation v4"):

{markdown_table(table)}

- **Limits**: about seven minutes of training video; the SSIM gain over the identity is within
  the clip-to-clip noise (docs/BENCHMARKS.md gives the paired intervals), the PSNR and LMD gains
  are not; sharper than the real crops (CPBD), like the identity image it edits; the edit is
  confined to the mouth, so pose and lighting are the identity image's.
"""
    out.with_suffix(".md").write_text(card, encoding="utf-8")
    return out


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
