"""Lip generation benchmark: metrics on held-out speakers and generation speed -> docs/BENCHMARKS.md.

    python benchmarks/generation.py --cache cache/gen --run runs/gen [--device cuda]

Rows: ground truth, the identity image repeated, the reconstruction-only generator and the full
model (``RUN/generator_rec.safetensors``, ``RUN/generator.safetensors``), beside the paper's GRID
and LRW rows. Rewrites the ``generation`` section of docs/BENCHMARKS.md and writes
RUN/generation_eval.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))

from compare import write_section  # noqa: E402

from avsync.data import split_cache_files  # noqa: E402
from avsync.lipgen.bundle import load_bundle  # noqa: E402
from avsync.lipgen.evaluate import (  # noqa: E402
    aggregate,
    evaluate_clip,
    generator_maker,
    markdown_table,
    repeat_maker,
    truth_maker,
)
from avsync.lipgen.generate import generate_frames  # noqa: E402
from avsync.models.registry import create_model  # noqa: E402
from avsync.models.syncnet import count_parameters  # noqa: E402

PAPER = """| paper (Chen et al. 2018), GRID: ground truth | | 0 | N/A | N/A | 0.141 | | | |
| paper, GRID: Chung et al. (reconstruction loss) | | 1.35 | 0.74 | 29.36 | 0.016 | | | |
| paper, GRID: full model | | 1.18 | 0.73 | 29.89 | 0.175 | | | |
| paper, LRW: ground truth | | 0 | N/A | N/A | 0.068 | | | |
| paper, LRW: full model | | 1.92 | 0.53 | 28.65 | 0.075 | | | |"""


def speed(generator: torch.nn.Module, device: str, seconds: float = 20.0) -> float:
    """Generated frames per second for ``seconds`` of (random) speech, batched windows."""
    g = generator.to(device)
    n = int(seconds * 25)
    logmel = np.random.default_rng(0).standard_normal((n * 4 + 8, 40)).astype(np.float32)
    ident = np.full((64, 64, 3), 128, np.uint8)
    generate_frames(g, logmel[:200], ident, 48)  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    generate_frames(g, logmel, ident, n)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default="cache/gen")
    ap.add_argument("--run", default="runs/gen")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--limit", type=int, default=0, help="only the first N val clips")
    ap.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="NAME=CHECKPOINT",
        help="another generator row (an ablation), e.g. 'plain decoder=runs/gen/generator.safetensors'",
    )
    ap.add_argument("--no-doc", action="store_true", help="do not rewrite docs/BENCHMARKS.md")
    ap.add_argument(
        "--ship",
        action="store_true",
        help="also copy the full model (generator, landmark "
        "and flow networks, float16) to src/avsync/weights/generator_paper.safetensors with its card",
    )
    args = ap.parse_args(argv)
    run = Path(args.run)
    _, val = split_cache_files(sorted(Path(args.cache).glob("*.npz")))
    val = val[: args.limit or None]
    full, meta = load_bundle(run / "generator.safetensors")
    rec, rec_meta = load_bundle(run / "generator_rec.safetensors", ("generator",))
    critics, critics_meta = load_bundle(run / "critics.safetensors", ("landmarks", "flow"))
    makers = {
        "ground truth": truth_maker,
        "identity image repeated": repeat_maker,
        "reconstruction loss only (ours)": generator_maker(rec["generator"]),
        "full model (ours)": generator_maker(full["generator"]),
    }
    for spec in args.also:
        name, _, path = spec.partition("=")
        makers[name] = generator_maker(load_bundle(path, ("generator",))[0]["generator"])
    sync = create_model("syncnet")
    t0 = time.perf_counter()
    per_clip = [evaluate_clip(f, makers, critics["landmarks"], sync) for f in val]
    table = aggregate([c for c in per_clip if c])
    cpu_threads = torch.get_num_threads()
    fps_cpu = speed(full["generator"], "cpu")
    fps_gpu = speed(full["generator"], "cuda") if torch.cuda.is_available() else None
    info = {
        "date": datetime.date.today().isoformat(),
        "eval_s": round(time.perf_counter() - t0, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores ({cpu_threads} torch threads), "
        f"Python {platform.python_version()}",
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "params": count_parameters(full["generator"]),
        "fps_cpu": fps_cpu,
        "fps_gpu": fps_gpu,
        "critics": critics_meta["metrics"],
        "full": meta["metrics"],
        "rec": rec_meta["metrics"],
    }
    (run / "generation_eval.json").write_text(
        json.dumps({"table": table, "per_clip": per_clip, "info": info}, indent=1, default=float)
    )
    text = render(table, info, args, len(val), [s.partition("=")[0] for s in args.also])
    if not args.no_doc:
        write_section(ROOT / "docs" / "BENCHMARKS.md", text, name="generation")
    if args.ship:
        ship(run, {"generator": full["generator"], **critics}, table, info, args)
    print(text)
    return 0


def ship(run: Path, nets: dict, table: dict, info: dict, args: argparse.Namespace) -> None:
    """weights/generator_paper.safetensors (+ card): the full model's generator with the landmark and
    flow networks of the run's critics bundle (frozen since their own training)."""
    from avsync.lipgen.bundle import save_bundle

    out = ROOT / "src" / "avsync" / "weights" / "generator_paper.safetensors"
    recipe = json.loads((run / "run.json").read_text())
    save_bundle(
        out,
        {k: nets[k] for k in ("generator", "landmarks", "flow")},
        {**info["full"], "eval": table.get("full model (ours)", {})},
        half=True,
    )
    order = [
        "ground truth",
        "identity image repeated",
        "reconstruction loss only (ours)",
        "full model (ours)",
    ]
    r = recipe["recipe"]
    crit = (
        f"the four critic networks were trained by an earlier run of the same recipe, then reused "
        f"(`--critics {recipe['critics_from']}`)"
        if recipe.get("critics_from")
        else "trained in this run"
    )
    card = f"""# Model card: `generator_paper` (lip movements from speech + one lip image; the paper's model)

- **Architecture**: Chen et al. 2018 ("Lip Movements Generation at a Glance"), sized for CPU
  training: audio encoder (log-mel 64 x 40) + identity encoder (64 x 64 RGB) fused by duplication
  and concatenation, 3D residual blocks, 3D transposed convolutions -> 16 RGB frames of 64 x 64 at
  25 fps ({info["params"]:,} parameters; `avsync.lipgen.model`). The file also holds the lip
  landmark network (LMD) and the distilled flow network, float16.
- **Use**: `avsync generate --audio SPEECH --image FACE_OR_LIPS.png -o out.mp4`; metrics:
  `avsync metrics out.mp4 [--reference real.mp4]`.
- **Data**: the training split of `src/avsync/data/realclips_split.jsonl` ({recipe["train_windows"]}
  training windows of 16 frames from 71 real clips, 28 speakers; `../shared/data/realclips`),
  mouth crops by the project's face pipeline (`avsync prepare --for generation`).
- **Recipe**: `python benchmarks/train_generator.py --cache {args.cache} --out {args.run}
  --generator-steps {r["generator_steps"]} --rec-steps {r["rec_steps"]}`: flow network
  {r["flow_steps"]} steps, landmark network {r["landmark_steps"]}, video autoencoder
  {r["autoencoder_steps"]}, correlation encoders {r["correlation_steps"]}, then the generator
  {r["generator_steps"]} steps of batch {r["batch_size"]} (Adam, lr {r["lr"]}, weight decay 1e-5)
  with L = {r["weights"]["rec"]} L1 + {r["weights"]["corr"]} L_corr + {r["weights"]["perc"]} L_perc +
  {r["weights"]["gan"]} L_GAN (three-stream discriminator, mismatch share {r["weights"]["mismatch"]}).
  Critics: {crit}. Training curves: `{args.run}/curves.png`.
- **Measured** on the {int(table["full model (ours)"]["clips"])} held-out-speaker validation clips
  (docs/BENCHMARKS.md, `python benchmarks/generation.py`):

{markdown_table(table, order)}

- **Speed**: {info["fps_cpu"]:.0f} frames/s on CPU ({info["machine"]}); GPU not measured in the run
  that shipped this file unless stated in docs/BENCHMARKS.md.
- **Limits**: trained on about six minutes of video in under an hour of 2-core CPU; the paper used
  211k GRID windows. Expect blurry, identity-averaged lips whose motion follows the speech
  loosely; see docs/BENCHMARKS.md for how it compares with the baselines.
"""
    (out.with_suffix(".md")).write_text(card, encoding="utf-8")
    print(f"shipped {out} ({out.stat().st_size / 1e6:.2f} MB)")


def render(table: dict, info: dict, args: argparse.Namespace, n_val: int, extra: list[str]) -> str:
    order = [
        "ground truth",
        "identity image repeated",
        "reconstruction loss only (ours)",
        "full model (ours)",
        *extra,
    ]
    ours = markdown_table(table, order)
    c = info["critics"]
    gpu = (
        f"{info['fps_gpu']:.0f} frames/s on {info['gpu']}"
        if info["fps_gpu"]
        else "not measured (no GPU lent)"
    )
    return f"""## Lip movement generation (issue 4)

Command: `python benchmarks/generation.py --cache {args.cache} --run {args.run}` on {info["date"]}
({info["machine"]}; evaluation {info["eval_s"]:.0f} s). Models trained by
`python benchmarks/train_generator.py --cache {args.cache} --out {args.run}` (recipe and curves:
`{args.run}/run.json`, `{args.run}/curves.png`; model card `src/avsync/weights/generator_paper.md`).

Test set: the {n_val} validation clips of the speaker-disjoint realclips split (speakers never
seen in training; GRID, LRS3/VoxCeleb2 crops, HDTF, news), each generated whole from its own
speech and its first frame as the identity image (16-frame windows every 8 frames, blended).
Crops are 64 x 64 RGB, mouth = half the width. LMD: lip points by our landmark network on
generated and real crops, each centred, mean point distance in crop pixels (the paper runs dlib
on its crops; no face detector works on a mouth-only crop). LSE-D / LSE-C: our SyncNet's mean
embedding distance over -15..15 frames (minimum; median minus minimum), as Wav2Lip's scripts do
with theirs; "sync" = share of clips whose best shift is within 1 frame.

{ours}
{PAPER}

Helper networks, measured on the same held-out windows: the landmark network's point error vs
the face landmarker is {c.get("val_point_err_px", float("nan")):.2f} px per point; the distilled
flow network's end-point error vs Farneback is {c.get("val_epe_px", float("nan")):.2f} px
(predicting zero flow: {c.get("val_epe_zero_px", float("nan")):.2f} px).

Generator: {info["params"]:,} parameters; generation speed {info["fps_cpu"]:.0f} frames/s on CPU
({info["machine"]}), GPU: {gpu}.

Reading the table: the paper's numbers come from 211k GRID training windows and 841k LRW windows;
ours from about 7.5k windows (6 minutes of 28 speakers), trained in under an hour on 2 CPU cores, so
they are not comparable in absolute terms; the comparison that means something is between our
rows on the same held-out clips.
"""


if __name__ == "__main__":
    raise SystemExit(main())
