"""Lip generation v3 (issue 15): a small residual edit of the identity image, selected by image
metrics against the identity-repeat baseline.

The generator is the paper's network with ``residual=True`` (its last layer edits the identity
image and starts at zero, so step 0 *is* the identity-repeat baseline), the resize-convolution
decoder and a fixed soft mouth mask on the edit (``mask_sigma_px``): outside the mouth region
the output is the identity image exactly. It is trained with a mouth-weighted L1 + MSE loss
(no adversarial or perceptual term: they trade PSNR/SSIM for sharpness), horizontal flips and
a brightness/contrast jitter applied identically to the identity and the target frames.

Model selection never looks at the test speakers: a share of the *training* speakers is held
out of the fit (``selection_split``) and every ``val_every`` steps the generator is scored on
their whole clips with the test protocol (identity = the clip's first detected frame, 16-frame
windows every 8 frames, blended): SSIM, PSNR and LMD, frame-weighted, next to the identity
image repeated. A checkpoint is kept only when it beats the baseline on all three, and among
those the one with the largest smallest margin (:func:`selection_score`); when none does, no
generator is written.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from avsync.data.splits import REALCLIPS_SPLIT, TRAIN_ONLY_GROUPS, speaker_group, split_cache_files
from avsync.errors import AvsyncError
from avsync.lipgen.bundle import load_bundle, save_bundle
from avsync.lipgen.evaluate import clip_logmel, lip_points
from avsync.lipgen.generate import DEFAULT_GENERATOR, generate_frames
from avsync.lipgen.metrics import lmd, psnr, ssim
from avsync.lipgen.model import GeneratorConfig, LipGenerator
from avsync.lipgen.windows import GenClip, GenWindows, load_gen_clip

Log = Callable[[str], None]


@dataclass(frozen=True)
class ResidualRecipe:
    """steps / batch_size / lr: Adam on the generator; l1, mse: loss weights (both weighted by
    the mouth mask, [-1, 1] pixel units); flip: probability of a horizontal flip of a window
    (identity too); jitter: brightness and contrast jitter amplitude (same draw for the
    identity and the target); other_utterance: probability that the identity frame comes from
    another clip of the same speaker (when there is one); selection_share: share of the training
    speakers held out for model selection (seed selection_seed); val_every: steps between
    selection evaluations; val_frames: frames per selection clip (its first ones);
    max_minutes: stop (keeping the best so far) after this much wall time (0: no limit);
    ema: decay of an exponential moving average of the generator's weights (0: off); when on,
    the averaged weights are what selection scores and what is written;
    preset, upsample, mask_sigma_px, half_res, dec_channels: the generator (see
    :class:`avsync.lipgen.model.GeneratorConfig`; dec_channels ignored by the debug preset)."""

    steps: int = 1500
    batch_size: int = 8
    lr: float = 5e-4
    l1: float = 1.0
    mse: float = 4.0
    flip: float = 0.5
    jitter: float = 0.1
    other_utterance: float = 0.0
    selection_share: float = 0.3
    selection_seed: int = 1
    val_every: int = 100
    val_frames: int = 400
    max_minutes: float = 0.0
    ema: float = 0.0
    seed: int = 0
    log_every: int = 25
    preset: str = "small"
    upsample: str = "resize"
    mask_sigma_px: tuple[float, float] = (20.0, 16.0)
    half_res: bool = True
    dec_channels: tuple[int, int, int] = (32, 16, 16)

    @classmethod
    def debug(cls) -> ResidualRecipe:
        return cls(steps=4, batch_size=2, val_every=2, val_frames=32, log_every=1, preset="debug")


def selection_split(files: Sequence[Path], share: float, seed: int) -> tuple[list[Path], list[Path]]:
    """(fit files, selection files) of the training files: ``share`` of their speaker groups
    (drawn with ``seed``) go to selection; the groups pinned to the training side of the split
    (GRID s1, a third of the training video) always stay in the fit."""
    speakers = {f: speaker_group(load_gen_clip(f).speaker) for f in files}
    groups = sorted(set(speakers.values()) - set(TRAIN_ONLY_GROUPS))
    n = int(len(groups) * share)
    sel = set(np.random.default_rng(seed).choice(groups, n, replace=False).tolist()) if n else set()
    return [f for f in files if speakers[f] not in sel], [f for f in files if speakers[f] in sel]


def generator_config(recipe: ResidualRecipe) -> GeneratorConfig:
    cfg = GeneratorConfig.preset(recipe.preset)
    return replace(cfg, residual=True, upsample=recipe.upsample, mask_sigma_px=tuple(recipe.mask_sigma_px),
                   half_res=recipe.half_res,
                   dec_channels=tuple(recipe.dec_channels) if recipe.preset != "debug" else cfg.dec_channels)


def augment(batch: dict[str, torch.Tensor], rng: np.random.Generator, flip: float, jitter: float) -> dict:
    """Flip (video and identity together) and brightness/contrast jitter (one draw per window,
    the same for its identity and its frames); values stay in [-1, 1]."""
    video, ident = batch["video"].clone(), batch["identity"].clone()  # (B, 3, T, H, W), (B, 3, H, W)
    b = len(video)
    flips = torch.from_numpy(rng.random(b) < flip)
    video[flips] = video[flips].flip(-1)
    ident[flips] = ident[flips].flip(-1)
    if jitter > 0:
        gain = torch.from_numpy(1 + jitter * (rng.random(b) * 2 - 1)).float()
        bias = torch.from_numpy(jitter * (rng.random(b) * 2 - 1)).float()
        video = (video * gain[:, None, None, None, None] + bias[:, None, None, None, None]).clamp(-1, 1)
        ident = (ident * gain[:, None, None, None] + bias[:, None, None, None]).clamp(-1, 1)
    return {**batch, "video": video, "identity": ident}


def other_utterance_identity(data: GenWindows, batch: dict, picks: Sequence[int], rng: np.random.Generator,
                             p: float) -> dict:
    """Replace each window's identity, with probability ``p``, by a random detected frame of
    another clip of the same speaker (kept when the speaker has one clip)."""
    if p <= 0:
        return batch
    by_speaker: dict[str, list[int]] = {}
    for i, c in enumerate(data.clips):
        by_speaker.setdefault(speaker_group(c.speaker), []).append(i)
    ident = batch["identity"].clone()
    for n, i in enumerate(picks):
        c = data.index[i][0]
        others = [j for j in by_speaker[speaker_group(data.clips[c].speaker)] if j != c]
        if others and rng.random() < p:
            clip = data.clips[int(rng.choice(others))]
            frame = clip.rgb[int(rng.choice(np.flatnonzero(clip.valid)))]
            ident[n] = torch.from_numpy(frame).float().permute(2, 0, 1) / 127.5 - 1.0
    return {**batch, "identity": ident}


def masked_loss(fake: torch.Tensor, real: torch.Tensor, mask: torch.Tensor, l1: float,
                mse: float) -> torch.Tensor:
    """l1 * mean(w |fake - real|) + mse * mean(w (fake - real)^2), w = mask / mean(mask)."""
    w = mask / mask.mean()
    d = fake - real
    return l1 * (w * d.abs()).mean() + mse * (w * d * d).mean()


def selection_metrics(make: Callable[[GenClip, np.ndarray, np.ndarray], np.ndarray], clips: Sequence[GenClip],
                      landmarks: torch.nn.Module, truth_pts: Sequence[np.ndarray]) -> dict[str, float]:
    """Frame-weighted SSIM, PSNR (dB) and LMD (crop px) of ``make`` on ``clips`` (identity = first
    detected frame; only detected frames scored), as benchmarks/lipgen_levers.py scores the test."""
    rows = []
    for clip, pts in zip(clips, truth_pts, strict=True):
        ok = np.flatnonzero(clip.valid)
        gen = make(clip, clip.rgb[ok[0]], clip_logmel(clip))[ok]
        truth = clip.rgb[ok]
        rows.append((len(ok), ssim(gen, truth), min(psnr(gen, truth), 99.0),
                     lmd(lip_points(landmarks, gen), pts)))
    w = np.array([r[0] for r in rows], np.float64)
    keys = ("ssim", "psnr", "lmd")
    return {k: float(np.average([r[i + 1] for r in rows], weights=w)) for i, k in enumerate(keys)}


def selection_score(model: dict[str, float], base: dict[str, float]) -> float:
    """Smallest of the three margins over the baseline, each as a share of the room left:
    SSIM gain / (1 - SSIM_base), PSNR gain / 10 dB, LMD reduction / LMD_base. > 0 only when the
    model beats the baseline on all three."""
    return min((model["ssim"] - base["ssim"]) / max(1 - base["ssim"], 1e-6),
               (model["psnr"] - base["psnr"]) / 10.0,
               (base["lmd"] - model["lmd"]) / max(base["lmd"], 1e-6))


def ema_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A frozen copy of ``model`` to hold its weights' moving average."""
    avg = copy.deepcopy(model)
    for p in avg.parameters():
        p.requires_grad_(False)
    return avg


@torch.no_grad()
def ema_update(avg: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """avg <- decay * avg + (1 - decay) * model, parameters and float buffers alike."""
    for a, m in zip(avg.state_dict().values(), model.state_dict().values(), strict=True):
        if a.dtype.is_floating_point:
            a.mul_(decay).add_(m, alpha=1 - decay)
        else:
            a.copy_(m)


def _truncate(clip: GenClip, frames: int) -> GenClip:
    return replace(clip, rgb=clip.rgb[:frames], lips=clip.lips[:frames], row0=clip.row0[:frames],
                   valid=clip.valid[:frames])


def selection_set(cache_dir: str | Path, recipe: ResidualRecipe, split: str | Path = REALCLIPS_SPLIT,
                  critics: str | Path = DEFAULT_GENERATOR) -> tuple:
    """(fit files, selection files, selection GenClips, {"landmarks", "flow"} nets of the
    ``critics`` bundle, real lip points of the selection clips, the identity-repeat baseline's
    selection metrics)."""
    files = sorted(Path(cache_dir).glob("*.npz"))
    if not files:
        raise AvsyncError(f"{cache_dir}: no cache files (run 'avsync prepare --for generation' first)")
    train_files, _ = split_cache_files(files, split)
    fit_files, sel_files = selection_split(train_files, recipe.selection_share, recipe.selection_seed)
    if not fit_files or not sel_files:
        raise AvsyncError(f"{cache_dir}: too few training speakers for a selection split")
    sel = [_truncate(load_gen_clip(f), recipe.val_frames) for f in sel_files]
    sel = [c for c in sel if c.valid.sum() >= 16]
    if not sel:
        raise AvsyncError(f"{cache_dir}: no usable selection clip")
    nets, _ = load_bundle(critics, ("landmarks", "flow"))
    truth_pts = [lip_points(nets["landmarks"], c.rgb[np.flatnonzero(c.valid)]) for c in sel]
    base = selection_metrics(lambda c, i, _m: np.repeat(i[None], len(c.rgb), 0), sel, nets["landmarks"],
                             truth_pts)
    return fit_files, sel_files, sel, nets, truth_pts, base


EDIT_SCALES: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)


def tune_edit_scale(bundle: str | Path, cache_dir: str | Path, out: str | Path,
                    recipe: ResidualRecipe = ResidualRecipe(), scales: Sequence[float] = EDIT_SCALES,
                    split: str | Path = REALCLIPS_SPLIT, log: Log | None = print,
                    blurs_px: Sequence[float] = (0.0,)) -> dict:
    """Shrink a trained generator's edit towards the identity image (and soften its mouth): score
    every (``scales``, ``blurs_px``) pair on the selection clips (the recipe's split; the test
    speakers are never looked at) and write the bundle with the best ``edit_scale`` and
    ``mouth_blur_px`` to ``out`` when one beats the baseline on all three metrics. Returns
    {"identity": ..., "tried": [{"edit_scale", "mouth_blur_px", metrics, "score"}], "chosen":
    the best entry or None}."""
    nets, meta = load_bundle(bundle)
    g = nets["generator"]
    _, _, sel, critic_nets, truth_pts, base = selection_set(cache_dir, recipe, split, bundle)
    tried = []
    for a in scales:
        for b in blurs_px:
            g.config = replace(g.config, edit_scale=float(a), mouth_blur_px=float(b))
            m = selection_metrics(lambda c, i, lm: generate_frames(g, lm, i, len(c.rgb)), sel,
                                  critic_nets["landmarks"], truth_pts)
            tried.append({"edit_scale": float(a), "mouth_blur_px": float(b), **m,
                          "score": selection_score(m, base)})
            if log:
                log(f"[tune] {tried[-1]}")
    best = max(tried, key=lambda r: r["score"])
    chosen = best if best["score"] > 0 else None
    if chosen is not None:
        g.config = replace(g.config, edit_scale=chosen["edit_scale"], mouth_blur_px=chosen["mouth_blur_px"])
        save_bundle(out, nets, {**meta["metrics"], "tune": tried, "selection_identity": base})
    return {"identity": base, "tried": tried, "chosen": chosen}


def train_residual(cache_dir: str | Path, out_dir: str | Path, recipe: ResidualRecipe = ResidualRecipe(),
                   split: str | Path = REALCLIPS_SPLIT, critics: str | Path = DEFAULT_GENERATOR,
                   log: Log | None = print) -> dict:
    """Train, select and write ``out_dir/generator.safetensors`` (generator + the ``critics``
    bundle's landmark and flow networks; only when a checkpoint beat the baseline),
    ``last.safetensors``, ``history.json`` and ``run.json``. Returns the run summary."""
    fit_files, sel_files, sel, nets, truth_pts, base = selection_set(cache_dir, recipe, split, critics)
    lms = nets["landmarks"]
    data = GenWindows([load_gen_clip(f) for f in fit_files], stride=1)
    if len(data) == 0:
        raise AvsyncError(f"{cache_dir}: no usable windows for training")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if log:
        log(f"fit: {len(data.clips)} clips ({len(data)} windows); selection: {len(sel)} clips of "
            f"{len({speaker_group(c.speaker) for c in sel})} speakers; identity repeated: {base}")
    torch.manual_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    g = LipGenerator(generator_config(recipe))
    shown = ema_copy(g) if recipe.ema > 0 else g  # what selection scores and what is written
    opt = torch.optim.Adam(g.parameters(), lr=recipe.lr, betas=(0.5, 0.999))
    history: list[dict] = [{"step": 0, **base, "score": 0.0}]
    best = {"step": 0, "score": 0.0, **base}
    t0, acc = time.perf_counter(), []

    def evaluate(step: int) -> None:
        shown.eval()
        m = selection_metrics(lambda c, i, lm: generate_frames(shown, lm, i, len(c.rgb)), sel, lms, truth_pts)
        g.train()
        score = selection_score(m, base)
        history.append({"step": step, **m, "score": score, "loss": float(np.mean(acc)) if acc else None,
                        "seconds": time.perf_counter() - t0})
        if score > best["score"]:
            best.update(step=step, score=score, **m)
            save_bundle(out / "generator.safetensors", {"generator": shown, **nets},
                        {"selection": m, "selection_identity": base, "step": step, "recipe": asdict(recipe)})
        if log:
            log(f"[select] step={step} ssim={m['ssim']:.4f} psnr={m['psnr']:.3f} lmd={m['lmd']:.4f} "
                f"score={score:.4f} best_step={best['step']}")
        (out / "history.json").write_text(json.dumps(history, indent=1))

    g.train()
    step = 0
    for step in range(1, recipe.steps + 1):
        picks = rng.integers(0, len(data), recipe.batch_size).tolist()
        batch = other_utterance_identity(data, data.items(picks, rng), picks, rng, recipe.other_utterance)
        batch = augment(batch, rng, recipe.flip, recipe.jitter)
        fake = g(batch["audio"], batch["identity"])
        loss = masked_loss(fake, batch["video"], g.mask, recipe.l1, recipe.mse)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if shown is not g:
            ema_update(shown, g, recipe.ema)
        acc.append(loss.item())
        if log and step % recipe.log_every == 0:
            log(f"[residual] step={step} loss={np.mean(acc[-recipe.log_every:]):.4f} "
                f"s={time.perf_counter() - t0:.0f}")
        out_of_time = recipe.max_minutes > 0 and time.perf_counter() - t0 > 60 * recipe.max_minutes
        if step % recipe.val_every == 0 or step == recipe.steps or out_of_time:
            evaluate(step)
            acc = []
        if out_of_time:
            break
    save_bundle(out / "last.safetensors", {"generator": shown, **nets}, {"step": step})
    summary = {"recipe": asdict(recipe), "fit_clips": [f.name for f in fit_files],
               "selection_clips": [f.name for f in sel_files], "fit_windows": len(data),
               "identity": base, "best": best, "steps_done": step, "shipped_candidate": best["step"] > 0,
               "seconds": time.perf_counter() - t0}
    (out / "run.json").write_text(json.dumps(summary, indent=1, default=float))
    return summary
