"""The whole lip-generator recipe in one call: critics first, then the generators.

``train_all`` reads the generation cache (``avsync prepare --for generation``), splits it by
speaker with the project's split file, trains the stages of :mod:`avsync.lipgen.training` and
writes to ``out_dir``: ``critics.safetensors`` (flow, landmarks, correlation, autoencoder),
``generator.safetensors`` (full loss: generator + discriminator + flow + landmarks),
``generator_rec.safetensors`` (reconstruction-only baseline), ``curves.json`` and
``curves.png``. Used by ``avsync train generator`` and ``benchmarks/generation.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from avsync.data.splits import REALCLIPS_SPLIT, split_cache_files
from avsync.errors import AvsyncError
from avsync.lipgen.bundle import save_bundle
from avsync.lipgen.critics import (
    CorrelationNets,
    CriticConfig,
    LipFlowNet,
    LipLandmarkNet,
    ThreeStreamDiscriminator,
    VideoAutoencoder,
    frames_of,
)
from avsync.lipgen.model import GeneratorConfig, LipGenerator
from avsync.lipgen.training import (
    Critics,
    LossWeights,
    StageConfig,
    flow_epe,
    frozen,
    landmark_error,
    train_autoencoder,
    train_correlation,
    train_flow,
    train_generator,
    train_landmarks,
)
from avsync.lipgen.windows import GenWindows, load_gen_clip


@dataclass(frozen=True)
class GenRecipe:
    """Steps per stage (0 skips a stage: the reconstruction-only baseline with rec_steps=0),
    batch size, learning rates, preset of every network and the loss weights."""

    preset: str = "small"
    flow_steps: int = 300
    landmark_steps: int = 600
    autoencoder_steps: int = 300
    correlation_steps: int = 400
    generator_steps: int = 1500
    rec_steps: int = 1500
    batch_size: int = 8
    lr: float = 2e-4
    critic_lr: float = 1e-3
    weights: LossWeights = field(default_factory=LossWeights)
    log_every: int = 25
    seed: int = 0

    @classmethod
    def debug(cls) -> GenRecipe:
        return cls(
            preset="debug",
            flow_steps=3,
            landmark_steps=3,
            autoencoder_steps=2,
            correlation_steps=2,
            generator_steps=3,
            rec_steps=2,
            batch_size=2,
            log_every=1,
        )


def load_windows(cache_dir: str | Path, split: str | Path = REALCLIPS_SPLIT) -> tuple[GenWindows, GenWindows]:
    """(train windows at every frame, val windows every 8 frames) of the cached clips."""
    files = sorted(Path(cache_dir).glob("*.npz"))
    if not files:
        raise AvsyncError(f"{cache_dir}: no cache files (run 'avsync prepare --for generation' first)")
    tr, va = split_cache_files(files, split)
    if not tr:
        raise AvsyncError(f"{cache_dir}: none of the cached clips is in the split's training set")
    try:
        train, val = (
            GenWindows([load_gen_clip(f) for f in tr], stride=1),
            GenWindows([load_gen_clip(f) for f in va]),
        )
    except ValueError as exc:
        raise AvsyncError(str(exc)) from exc
    if len(train) == 0:
        raise AvsyncError(f"{cache_dir}: no 16-frame window without a missed face in the training clips")
    return train, val


def generator_val(
    g: LipGenerator, landmarks: LipLandmarkNet, val: GenWindows, n: int = 48, device: str = "cpu"
) -> Callable[[], dict[str, float]]:
    """A validation function: L1 and landmark distance (crop px) on the first ``n`` val windows."""
    batch = {k: v.to(device) for k, v in val.items(list(range(min(n, len(val))))).items()}

    def run() -> dict[str, float]:
        g.eval()
        with torch.no_grad():
            fake = g(batch["audio"], batch["identity"])
            pf, pr = landmarks(frames_of(fake)), landmarks(frames_of(batch["video"]))
        g.train()
        pf, pr = pf - pf.mean(1, keepdim=True), pr - pr.mean(1, keepdim=True)
        return {
            "val_l1": F.l1_loss(fake, batch["video"]).item(),
            "val_lmd_px": (pf - pr).norm(dim=-1).mean().item(),
        }

    return run


def train_all(
    cache_dir: str | Path,
    out_dir: str | Path,
    recipe: GenRecipe = GenRecipe(),
    split: str | Path = REALCLIPS_SPLIT,
    device: str = "cpu",
    log: Callable[[str], None] | None = print,
    critics: str | Path | None = None,
) -> dict[str, object]:
    """Train every stage; returns the summary written to ``out_dir/run.json``. ``critics``: a
    ``critics.safetensors`` of an earlier run to reuse instead of training the critics again."""
    train, val = load_windows(cache_dir, split)  # first: bad data leaves no empty run folder
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if log:
        log(f"{len(train.clips)} train clips ({len(train)} windows), {len(val.clips)} val clips ({len(val)})")
    cc, gc = CriticConfig.preset(recipe.preset), GeneratorConfig.preset(recipe.preset)
    base = StageConfig(
        batch_size=recipe.batch_size,
        lr=recipe.critic_lr,
        log_every=recipe.log_every,
        seed=recipe.seed,
        device=device,
    )
    curves: dict[str, list] = {}
    if critics is not None:
        flow, lms, corr, ae = load_critics(critics, device)
        if log:
            log(f"critics (flow, landmarks, correlation, autoencoder) from {critics}")
    else:
        flow, lms, corr, ae = train_critics(cc, train, val, base, recipe, curves, log)
    for net in (flow, lms, corr, ae):  # frozen from here on: BatchNorm statistics must not drift
        frozen(net)
    critic_metrics = {
        **(flow_epe(flow, val) if len(val) else {}),
        **(landmark_error(lms, val) if len(val) else {}),
    }
    save_bundle(
        out / "critics.safetensors",
        {"flow": flow, "landmarks": lms, "correlation": corr, "autoencoder": ae},
        critic_metrics,
    )
    gcfg = replace(base, lr=recipe.lr)
    runs = {
        "generator": (recipe.generator_steps, recipe.weights),
        "generator_rec": (recipe.rec_steps, LossWeights(rec=1.0, corr=0.0, perc=0.0, gan=0.0)),
    }
    summary: dict[str, object] = {
        "recipe": asdict(recipe),
        "critics": critic_metrics,
        "critics_from": str(critics) if critics is not None else None,
        "train_windows": len(train),
        "val_windows": len(val),
    }
    for name, (steps, weights) in runs.items():
        if steps <= 0:
            continue
        torch.manual_seed(recipe.seed)
        g, disc = LipGenerator(gc).to(device), ThreeStreamDiscriminator(cc).to(device)
        val_fn = generator_val(g, lms, val, device=device) if len(val) else None
        curves[name] = train_generator(
            g, Critics(flow, corr, ae, disc), train, replace(gcfg, steps=steps), weights, log, val_fn
        )
        final = {k: v for k, v in curves[name][-1].items() if k.startswith("val_")}
        nets = {"generator": g, "landmarks": lms, "flow": flow}
        if weights.gan:
            nets["discriminator"] = disc
        save_bundle(out / f"{name}.safetensors", nets, {**final, "steps": steps, **asdict(weights)})
        summary[name] = final
    (out / "curves.json").write_text(json.dumps(curves, indent=1))
    (out / "run.json").write_text(json.dumps(summary, indent=1, default=str))
    plot_curves(curves, out / "curves.png")
    return summary


def train_critics(cc: CriticConfig, train: GenWindows, val: GenWindows, base: StageConfig, recipe: GenRecipe,
                  curves: dict[str, list], log: Callable[[str], None] | None) -> tuple:
    """Stages 1-4 (flow, landmarks, autoencoder, correlation); curves are added to ``curves``."""
    device = base.device
    val_or_none = val if len(val) else None
    flow, lms = LipFlowNet(cc).to(device), LipLandmarkNet(cc).to(device)
    corr, ae = CorrelationNets(cc).to(device), VideoAutoencoder(cc).to(device)
    curves["flow"] = train_flow(flow, train, replace(base, steps=recipe.flow_steps), log, val_or_none)
    curves["landmarks"] = train_landmarks(lms, train, replace(base, steps=recipe.landmark_steps), log,
                                          val_or_none)
    curves["autoencoder"] = train_autoencoder(ae, train, replace(base, steps=recipe.autoencoder_steps), log)
    corr_cfg = replace(base, steps=recipe.correlation_steps)
    curves["correlation"] = train_correlation(corr, flow, train, corr_cfg, log)
    return flow, lms, corr, ae


def load_critics(path: str | Path, device: str) -> tuple:
    """(flow, landmarks, correlation, autoencoder) networks of a critics bundle, on ``device``."""
    from avsync.lipgen.bundle import load_bundle

    nets, _ = load_bundle(path, ("flow", "landmarks", "correlation", "autoencoder"))
    return tuple(nets[k].to(device) for k in ("flow", "landmarks", "correlation", "autoencoder"))


def plot_curves(curves: dict[str, list], path: Path) -> None:
    """One panel per stage: its loss terms (and validation values) against step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n, h in curves.items() if h]
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        hist = curves[name]
        for key in [k for k in hist[-1] if k not in ("step", "seconds")]:
            pts = [(h["step"], h[key]) for h in hist if key in h]
            ax.plot(*zip(*pts, strict=True), "o-" if key.startswith("val_") else "-", label=key, ms=3)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
