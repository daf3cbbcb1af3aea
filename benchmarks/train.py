"""Train a neural sync method end to end from the training cache (CPU or GPU, torchrun-ready).

    python benchmarks/train.py --cache cache/train --split src/avsync/data/realclips_split.jsonl \
        --method syncnet|landmark --preset small --steps N --out runs/NAME [--device cuda]

Writes to --out: model.safetensors (best weights + metadata), curves.json, curves.png and
run.json (arguments, data counts, best metrics, timing). Multi-GPU:
``torchrun --nproc_per_node 4 benchmarks/train.py ... --device cuda``.

The split file is JSON Lines ``{"path": MANIFEST-relative path, "speaker", "split": "train"|"val"}``;
cache files are matched to it by the ``path`` stored in each npz (relative to the realclips
folder or absolute), on the path's suffix.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from avsync.models.syncnet import count_parameters
from avsync.train import SyncDataset, TaskConfig, TrainConfig, build_model, seed_everything, train
from avsync.train.checkpoint import MODEL_FAMILIES, load_checkpoint
from avsync.train.loop import distributed_env
from avsync.train.tasks import LOSSES


def _parts(path: str) -> tuple[str, ...]:
    return tuple(p for p in PurePosixPath(path.replace("\\", "/")).parts if p not in ("/", "."))


def same_clip(stored: str, manifest_rel: str) -> bool:
    """True when the cache's stored path and a MANIFEST-relative path name the same file:
    one is a suffix (whole path components) of the other, the manifest path entirely."""
    a, b = _parts(stored), _parts(manifest_rel)
    if not a or not b:
        return False
    n = min(len(a), len(b))
    return a[-n:] == b[-n:] and (len(b) <= len(a) or not PurePosixPath(stored).is_absolute())


def match_split(cache_files: list[Path], split_rows: list[dict]) -> tuple[dict[str, list[Path]],
                                                                         dict[str, set[str]], list[Path]]:
    """({"train": files, "val": files}, {"train": speakers, "val": speakers}, unmatched files)."""
    by_name: dict[str, list[dict]] = {}
    for row in split_rows:
        by_name.setdefault(_parts(row["path"])[-1], []).append(row)
    files: dict[str, list[Path]] = {"train": [], "val": []}
    speakers: dict[str, set[str]] = {"train": set(), "val": set()}
    unmatched = []
    for f in cache_files:
        with np.load(f, allow_pickle=False) as z:
            stored = str(z["path"])
        rows = [r for r in by_name.get(_parts(stored)[-1] if _parts(stored) else "", [])
                if same_clip(stored, r["path"])]
        if not rows or rows[0]["split"] not in files:
            unmatched.append(f)
            continue
        files[rows[0]["split"]].append(f)
        speakers[rows[0]["split"]].add(str(rows[0].get("speaker", "")))
    return files, speakers, unmatched


def label_moves(path: Path | None, max_offset: int, min_confidence: float) -> dict[str, int]:
    """Cache file name -> frames to re-centre (confident, small, non-zero estimates only)."""
    if path is None:
        return {}
    rows = json.loads(path.read_text())
    return {name: int(r["offset_frames"]) for name, r in rows.items()
            if r["confidence"] >= min_confidence and 0 < abs(int(r["offset_frames"])) <= max_offset}


def config_with(method: str, preset: str, overrides: list[str]):
    """The preset's config of ``method`` with FIELD=VALUE overrides (VALUE parsed as JSON, lists
    as tuples, else taken as a string). ValueError for an unknown field or a bad value."""
    import dataclasses

    from avsync.train.checkpoint import family

    cfg = family(method)[0].preset(preset)
    fields = {f.name for f in dataclasses.fields(cfg)}
    changes = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or key not in fields:
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE with FIELD one of "
                             f"{', '.join(sorted(fields))}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        changes[key] = tuple(value) if isinstance(value, list) else value
    return dataclasses.replace(cfg, **changes)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, default=Path("cache/train"))
    ap.add_argument("--split", type=Path, default=Path("src/avsync/data/realclips_split.jsonl"))
    ap.add_argument("--method", choices=sorted(MODEL_FAMILIES), required=True)
    ap.add_argument("--preset", choices=("debug", "small"), default="small")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    ap.add_argument("--lr", type=float, default=TrainConfig.lr)
    ap.add_argument("--eval-every", type=int, default=TrainConfig.eval_every)
    ap.add_argument("--patience", type=int, default=TrainConfig.patience)
    ap.add_argument("--warmup", type=int, default=TrainConfig.warmup_steps)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-windows", type=int, default=TrainConfig.eval_max_windows,
                    help="windows per validation clip at each evaluation")
    ap.add_argument("--loss", choices=LOSSES, default="auto",
                    help="auto: the model's usual loss (pm, bce, ce or huber by output kind)")
    ap.add_argument("--init-from", type=Path, default=None,
                    help="wlos: a trained c3 checkpoint whose towers initialise the model (as in the paper)")
    ap.add_argument("--audio-init", type=Path, default=None,
                    help="start the audio tower from pre-trained conv blocks (benchmarks/pretrain_audio.py)")
    ap.add_argument("--no-augment", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--label-offsets", type=Path, default=None,
                    help="JSON of benchmarks/label_offsets.py: re-centre confident training clips")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="override a field of the preset's config (JSON value), e.g. similarity_dim=0")
    ap.add_argument("--max-label-offset", type=int, default=6)
    ap.add_argument("--min-label-confidence", type=float, default=3.0)
    args = ap.parse_args(argv)
    rank, world, local_rank = distributed_env()
    device = args.device
    if device == "cuda" and world > 1:
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(local_rank)
    if args.threads:
        torch.set_num_threads(args.threads)
    say = print if rank == 0 else (lambda *_a, **_k: None)

    rows = [json.loads(line) for line in args.split.read_text().splitlines() if line.strip()]
    cache_files = sorted(args.cache.glob("*.npz"))
    if not cache_files:
        say(f"no cache files in {args.cache}", file=sys.stderr)
        return 2
    files, speakers, unmatched = match_split(cache_files, rows)
    say(f"cache {len(cache_files)} files: train {len(files['train'])} ({len(speakers['train'])} speakers), "
        f"val {len(files['val'])} ({len(speakers['val'])} speakers), not in split {len(unmatched)}")
    shared = speakers["train"] & speakers["val"]
    if shared:
        say(f"error: speakers in both train and val: {sorted(shared)[:5]}", file=sys.stderr)
        return 2
    if not files["train"]:
        say("error: no training clip matched the split", file=sys.stderr)
        return 2

    task = TaskConfig(loss=args.loss, augment=not args.no_augment)
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                      warmup_steps=min(args.warmup, max(1, args.steps // 10)),
                      eval_every=args.eval_every, patience=args.patience, seed=args.seed,
                      eval_max_windows=args.eval_windows)
    seed_everything(args.seed)
    try:
        model = build_model(args.method, config_with(args.method, args.preset, args.set))
    except ValueError as e:
        say(f"error: {e}", file=sys.stderr)
        return 2
    if args.init_from is not None:
        source, _, _ = load_checkpoint(args.init_from)
        model.init_from_c3(source)
        say(f"towers initialised from {args.init_from}")
    audio_init = {}
    if args.audio_init is not None:
        from avsync.errors import AvsyncError
        from avsync.train.audio_pretrain import init_audio_tower

        try:
            meta = init_audio_tower(model, args.audio_init)
            audio_init = {"audio_init": {"path": str(args.audio_init), **meta}}
        except (AvsyncError, AttributeError) as e:
            say(f"error: --audio-init: {e}", file=sys.stderr)
            return 2
        say(f"audio tower initialised from {args.audio_init}")
    t0 = time.perf_counter()
    shape = {"frames": model.config.frames, "audio_rows": model.config.audio_rows}
    moves = label_moves(args.label_offsets, args.max_label_offset, args.min_label_confidence)
    train_ds = SyncDataset(files["train"], model.visual_kind, task, label_offsets=moves, **shape)
    if args.label_offsets is not None:
        moved = [m for m in train_ds.label_offsets if m]
        say(f"label correction: {len(moved)} of {len(train_ds.clips)} training clips re-centred "
            f"(moves in frames: {dict(sorted(Counter(moved).items()))}); validation labels untouched")
    val_ds = SyncDataset(files["val"], model.visual_kind, task, **shape) if files["val"] else None
    say(f"windows: train {train_ds.n_windows} ({len(train_ds)} groups of {task.group}), "
        f"val {val_ds.n_windows if val_ds else 0} "
        f"(loaded in {time.perf_counter() - t0:.1f} s)")
    say(f"{args.method}/{args.preset}: {count_parameters(model)} parameters, device {device}, "
        f"world size {world}")
    result = train(model, train_ds, val_ds, task, cfg, device, out_dir=args.out, method=args.method,
                   extra_meta={"preset": args.preset, "split": str(args.split), **audio_init})
    if rank == 0:
        run = {"args": {k: str(v) for k, v in vars(args).items()}, "device": str(device),
               "world_size": world, "parameters": count_parameters(model),
               "train_clips": len(files["train"]), "val_clips": len(files["val"]),
               "train_speakers": len(speakers["train"]), "val_speakers": len(speakers["val"]),
               "train_windows": train_ds.n_windows,
               "label_moves": [int(m) for m in train_ds.label_offsets],
               "best": result.best, "best_step": result.best_step,
               "steps_run": result.steps_run, "stopped_early": result.stopped_early,
               "seconds": round(result.seconds, 1), "train_config": asdict(cfg),
               "audio_init": audio_init.get("audio_init")}
        (args.out / "run.json").write_text(json.dumps(run, indent=1, default=str))
        say(f"best {result.best} at step {result.best_step}; {result.seconds:.0f} s; -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
