"""One training loop for every neural sync method (CPU or GPU, single process or torchrun DDP).

AdamW with linear warm-up then cosine decay, gradient clipping, evaluation every
``eval_every`` steps on the validation clips with the offset-accuracy metric (argmax over the
31 shifts within +-1 frame of the truth), early stopping on validation accuracy, the best
weights kept. Under ``torchrun`` (env RANK / WORLD_SIZE) the process group is initialised
(gloo on CPU, nccl on GPU), the model wrapped in DistributedDataParallel, training windows and
validation clips sharded by rank; only rank 0 writes files.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from avsync.train.checkpoint import save_checkpoint
from avsync.train.metrics import COUNT_KEYS, clip_offset_counts, offset_metrics
from avsync.train.tasks import SyncDataset, TaskConfig, augment, task_loss

CHANCE_ACC: float = 3 / 31
"""Offset accuracy (+-1 of 31 shifts) of a random guess."""


@dataclass(frozen=True)
class TrainConfig:
    """steps: optimiser steps; batch_size: windows per step and rank (in groups of
    TaskConfig.group); lr: peak AdamW rate,
    reached after warmup_steps, cosine-decayed to lr * min_lr_ratio; grad_clip: max global
    gradient norm; eval_every: steps between evaluations; patience: evaluations without a
    better ``select_metric`` before stopping (0 = never); eval_max_windows: windows per
    validation clip; context_frames: the longer context also reported."""

    steps: int = 3000
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    min_lr_ratio: float = 0.02
    grad_clip: float = 5.0
    eval_every: int = 100
    patience: int = 10
    seed: int = 0
    log_every: int = 10
    eval_max_windows: int = 500
    context_frames: int = 15
    select_metric: str = "val_acc"


@dataclass
class TrainResult:
    """history: one dict per log point (step, lr, loss, acc, and val_* where evaluated);
    best: the selected evaluation's metrics; best_step: its step."""

    history: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, float] = field(default_factory=dict)
    best_step: int = 0
    steps_run: int = 0
    stopped_early: bool = False
    seconds: float = 0.0


def distributed_env() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment (0, 1, 0 when absent)."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


def init_distributed(device: torch.device) -> bool:
    """Initialise the process group when WORLD_SIZE > 1 and none exists; True if created here."""
    _, world, _ = distributed_env()
    if world <= 1 or dist.is_initialized():
        return False
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return True


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Multiplier of cfg.lr at ``step``: linear warm-up, then cosine to ``min_lr_ratio``."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    span = max(1, cfg.steps - cfg.warmup_steps)
    t = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))


def _all_sum(values: list[float], device: torch.device) -> list[float]:
    if not (dist.is_available() and dist.is_initialized()):
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def evaluate(model: nn.Module, val: SyncDataset, task: TaskConfig, device: torch.device,
             cfg: TrainConfig, rank: int = 0, world: int = 1) -> dict[str, float]:
    """Offset accuracy on the validation clips (this rank's share, summed over ranks)."""
    keys = COUNT_KEYS
    sums = dict.fromkeys(keys, 0.0)
    for clip in val.clips[rank::world]:
        counts = clip_offset_counts(model, clip, task, device, cfg.eval_max_windows, cfg.context_frames)
        for k in keys:
            sums[k] += counts[k]
    return offset_metrics(dict(zip(keys, _all_sum([sums[k] for k in keys], device), strict=True)),
                          cfg.context_frames)


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]


def train(model: nn.Module, train_ds: SyncDataset, val_ds: SyncDataset | None,
          task: TaskConfig, cfg: TrainConfig, device: torch.device | str,
          out_dir: str | Path | None = None, method: str | None = None,
          log: Callable[[str], None] | None = print, extra_meta: dict[str, Any] | None = None
          ) -> TrainResult:
    """Train ``model`` in place (best weights loaded at the end) and return its curves.

    device: where to train (the caller chooses: cuda if available, else cpu; under torchrun
    with GPUs, ``cuda:LOCAL_RANK``). With ``out_dir`` rank 0 writes ``model.safetensors``,
    ``curves.json`` and ``curves.png`` there.
    """
    device = torch.device(device)
    created = init_distributed(device)
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    say = log if (log is not None and rank == 0) else (lambda _msg: None)
    if len(train_ds) == 0:
        raise ValueError("no valid training windows")
    if (train_ds.frames, train_ds.rows) != (model.config.frames, model.config.audio_rows):
        raise ValueError(f"dataset windows ({train_ds.frames} frames, {train_ds.rows} rows) do not fit "
                         f"the model ({model.config.frames}, {model.config.audio_rows})")
    raw = model.to(device)
    scale = getattr(raw, "log_scale", None)
    if task.loss_for(getattr(raw, "output", "embedding")) != "pm" and isinstance(scale, nn.Parameter):
        raw.log_scale.requires_grad_(False)  # unused by pair losses (DDP needs every grad)
    net: nn.Module = raw
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            raw, device_ids=[device.index] if device.type == "cuda" else None)
    opt = torch.optim.AdamW(_param_groups(raw, cfg.weight_decay), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    params = [p for p in raw.parameters() if p.requires_grad]
    rng = np.random.default_rng(cfg.seed + 1009 * rank)
    anchors = max(1, cfg.batch_size // train_ds.task.group)  # windows come in groups
    torch.manual_seed(cfg.seed + 7919 * (rank + 1))  # augmentation draws differ by rank
    out = Path(out_dir) if out_dir is not None and rank == 0 else None
    result, t0 = TrainResult(), time.perf_counter()
    best_score, best_state, bad = -math.inf, None, 0
    acc_sum = [0.0, 0.0, 0.0]  # loss, acc, steps since the last log point
    for step in range(1, cfg.steps + 1):
        raw.train()
        batch = train_ds.batch(train_ds.sample_indices(rng, anchors, rank, world), device)
        if task.augment:
            batch = augment(batch, train_ds.kind, task.aug)
        loss, stats = task_loss(net, raw, batch, task)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        sched.step()
        acc_sum = [acc_sum[0] + stats["loss"], acc_sum[1] + stats["acc"], acc_sum[2] + 1]
        result.steps_run = step
        do_eval = val_ds is not None and len(val_ds.clips) > 0 and (
            step % cfg.eval_every == 0 or step == cfg.steps)
        if step % cfg.log_every and not do_eval and step != cfg.steps:
            continue
        loss_sum, a_sum, n = _all_sum(acc_sum, device)
        entry = {"step": step, "lr": sched.get_last_lr()[0], "loss": loss_sum / n, "acc": a_sum / n,
                 **({"scale": raw.logit_scale.item()} if hasattr(raw, "logit_scale") else {}),
                 "seconds": time.perf_counter() - t0}
        acc_sum = [0.0, 0.0, 0.0]
        if do_eval:
            entry.update(evaluate(raw, val_ds, task, device, cfg, rank, world))
            score = entry[cfg.select_metric]
            if score > best_score:
                best_score, bad, result.best_step = score, 0, step
                result.best = {k: v for k, v in entry.items() if k.startswith("val_")}
                best_state = copy.deepcopy({k: v.detach().cpu() for k, v in raw.state_dict().items()})
            else:
                bad += 1
        result.history.append(entry)
        say(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in entry.items()))
        if out is not None and do_eval:
            save_curves(result.history, out, method or "")
        if do_eval and cfg.patience and bad >= cfg.patience:
            result.stopped_early = True
            say(f"early stop at step {step}: no better {cfg.select_metric} in {bad} evaluations")
            break
    if best_state is not None:
        raw.load_state_dict(best_state)
    result.seconds = time.perf_counter() - t0
    if out is not None:
        metrics = {**result.best, "best_step": result.best_step, "steps_run": result.steps_run,
                   "train_windows": train_ds.n_windows, "train_clips": len(train_ds.clips),
                   "val_clips": len(val_ds.clips) if val_ds is not None else 0,
                   "seconds": round(result.seconds, 1), "world_size": world}
        save_checkpoint(out / "model.safetensors", raw, metrics, method,
                        extra={"train": asdict(cfg), "task": asdict(task), **(extra_meta or {})})
        save_curves(result.history, out, method or "")
    if world > 1:
        dist.barrier()
    if created:
        dist.destroy_process_group()
    return result


def save_curves(history: list[dict[str, float]], out_dir: str | Path, title: str = "") -> None:
    """Write ``curves.json`` and ``curves.png`` (loss and accuracies against step)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "curves.json").write_text(json.dumps(history, indent=1))
    steps = [h["step"] for h in history]
    ev = [h for h in history if "val_acc" in h]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot(steps, [h["loss"] for h in history], label="train loss")
    if ev:
        if any(math.isfinite(h["val_loss"]) for h in ev):
            ax1.plot([h["step"] for h in ev], [h["val_loss"] for h in ev], "o-", label="val loss (PM)")
    ax1.set_xlabel("step")
    ax1.legend()
    ax2.plot(steps, [h["acc"] for h in history], alpha=0.5, label="train acc")
    for key in [k for k in (ev[0] if ev else {}) if k.startswith("val_acc")]:
        ax2.plot([h["step"] for h in ev], [h[key] for h in ev], "o-", label=key)
    ax2.axhline(CHANCE_ACC, color="grey", ls=":", label="chance (3/31)")
    ax2.set_ylim(0, 1)
    ax2.set_xlabel("step")
    ax2.legend(fontsize=8)
    fig.suptitle(f"{title} training curves".strip())
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=90)
    plt.close(fig)
