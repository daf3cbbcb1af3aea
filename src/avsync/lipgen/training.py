"""Training of the lip generator and its critics (Chen et al. 2018), stage by stage.

Stages, each a function that trains one network from generation windows and returns its
curve (list of dicts):

1. ``train_flow``: LipFlowNet distilled from OpenCV Farneback flow between consecutive real
   crops (pooled to 16 x 16), the differentiable flow of the correlation loss and of the
   discriminator's flow stream (the paper fine-tunes a downloaded FlowNet);
2. ``train_landmarks``: LipLandmarkNet on real crops labelled by the face landmarker (for LMD);
3. ``train_autoencoder``: the video autoencoder of the perceptual loss (L1 reconstruction);
4. ``train_correlation``: the audio-derivative and flow encoders on real windows. Eq. 1 alone
   is minimised by constant encoders (the paper notes it), so the matching pair's cosine is
   also contrasted with the other windows of the batch (InfoNCE); frozen afterwards;
5. ``train_generator``: L = w_rec L1 + w_corr L_corr + w_perc L_perc + w_gan L_GAN with the
   three-stream discriminator trained alongside (real / fake / mismatched-audio real, eq. 4).
   ``LossWeights(rec=1, corr=0, perc=0, gan=0)`` is the reconstruction-only baseline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from avsync.lipgen.critics import (
    FLOW_SIZE,
    CorrelationNets,
    LipFlowNet,
    LipLandmarkNet,
    ThreeStreamDiscriminator,
    VideoAutoencoder,
    audio_derivative,
    correlation_loss,
    frames_of,
    perceptual_loss,
)
from avsync.lipgen.model import LipGenerator
from avsync.lipgen.windows import GenWindows

Log = Callable[[str], None]


@dataclass(frozen=True)
class LossWeights:
    """Weights of the generator loss terms: the paper's 0.5 / 1.0 / 1.0 for correlation /
    perceptual / adversarial; the reconstruction term is weighted 10 here (pixel L1 on [-1, 1]
    images is ~10x smaller than the adversarial term, which otherwise dominates short runs)."""

    rec: float = 10.0
    corr: float = 0.5
    perc: float = 1.0
    gan: float = 1.0
    mismatch: float = 0.5  # share of the discriminator's fake term given to mismatched real pairs


@dataclass(frozen=True)
class StageConfig:
    steps: int = 300
    batch_size: int = 8
    lr: float = 2e-4
    weight_decay: float = 1e-5  # the paper's Adam with weight decay
    log_every: int = 25
    seed: int = 0
    device: str = "cpu"


def farneback_targets(video_u8: np.ndarray) -> np.ndarray:
    """(B, T, 64, 64, 3) uint8 -> Farneback flow between consecutive frames, average-pooled to
    16 x 16: (B, 2, T-1, 16, 16) float32 in crop pixels."""
    import cv2  # imported here: training with --critics needs no OpenCV (e.g. on a GPU box)
    b, t = video_u8.shape[:2]
    out = np.zeros((b, 2, t - 1, FLOW_SIZE, FLOW_SIZE), np.float32)
    for i in range(b):
        grey = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in video_u8[i]]
        for k in range(t - 1):
            flow = cv2.calcOpticalFlowFarneback(grey[k], grey[k + 1], None, 0.5, 3, 9, 3, 5, 1.1, 0)
            out[i, :, k] = cv2.resize(flow, (FLOW_SIZE, FLOW_SIZE), interpolation=cv2.INTER_AREA).transpose(
                2, 0, 1
            )
    return out


def _update(opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """One optimiser step on ``loss``."""
    opt.zero_grad()
    loss.backward()
    opt.step()


def _adam(params, cfg: StageConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=cfg.lr, betas=(0.5, 0.999), weight_decay=cfg.weight_decay)


def _loop(
    step_fn: Callable[[dict, int], dict[str, float]],
    data: GenWindows,
    cfg: StageConfig,
    name: str,
    log: Log | None,
    val_fn: Callable[[], dict[str, float]] | None = None,
    batch_fn: Callable[[dict], dict] | None = None,
) -> list[dict[str, float]]:
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    history, acc, t0 = [], {}, time.perf_counter()
    for step in range(1, cfg.steps + 1):
        batch = data.sample(rng, cfg.batch_size)
        batch = {k: v.to(cfg.device) for k, v in (batch_fn(batch) if batch_fn else batch).items()}
        stats = step_fn(batch, step)
        for k, v in stats.items():
            acc[k] = acc.get(k, 0.0) + v
        if step % cfg.log_every == 0 or step == cfg.steps:
            n = cfg.log_every if step % cfg.log_every == 0 else step % cfg.log_every
            entry = {"step": step, **{k: v / n for k, v in acc.items()}, "seconds": time.perf_counter() - t0}
            if val_fn is not None and (step % (4 * cfg.log_every) == 0 or step == cfg.steps):
                entry.update(val_fn())
            history.append(entry)
            acc = {}
            if log is not None:
                log(
                    f"[{name}] "
                    + " ".join(
                        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in entry.items()
                    )
                )
    return history


def _with_flow_targets(batch: dict) -> dict:
    from avsync.lipgen.windows import to_uint8

    batch["flow"] = torch.from_numpy(farneback_targets(to_uint8(batch["video"])))
    return batch


def flow_epe(net: LipFlowNet, data: GenWindows, n: int = 32) -> dict[str, float]:
    """End-point error (crop px) of the flow net and of predicting zero flow, vs Farneback, on
    the first ``n`` windows of ``data``."""
    batch = _with_flow_targets(data.items(list(range(min(n, len(data))))))
    batch = {k: v.to(next(net.parameters()).device) for k, v in batch.items()}
    was_training = net.training
    net.eval()
    with torch.no_grad():
        pred = net.video_flow(batch["video"])
    net.train(was_training)
    target = batch["flow"]
    epe = (pred - target).norm(dim=1).mean().item()
    return {"val_epe_px": epe, "val_epe_zero_px": target.norm(dim=1).mean().item()}


def train_flow(
    net: LipFlowNet,
    data: GenWindows,
    cfg: StageConfig,
    log: Log | None = print,
    val: GenWindows | None = None,
) -> list[dict[str, float]]:
    """Distil Farneback into ``net`` (L1 on the pooled flow); val: EPE vs zero-flow EPE."""
    opt = _adam(net.parameters(), cfg)

    def step(batch: dict, _: int) -> dict[str, float]:
        loss = F.l1_loss(net.video_flow(batch["video"]), batch["flow"])
        _update(opt, loss)
        return {"loss": loss.item()}

    return _loop(
        step, data, cfg, "flow", log, (lambda: flow_epe(net, val)) if val else None, _with_flow_targets
    )


def landmark_error(net: LipLandmarkNet, data: GenWindows, n: int = 64) -> dict[str, float]:
    """Mean point error (crop px) of the landmark net on ``n`` windows' frames."""
    batch = data.items(list(range(min(n, len(data)))))
    batch = {k: v.to(next(net.parameters()).device) for k, v in batch.items()}
    was_training = net.training
    net.eval()
    with torch.no_grad():
        pred = net(frames_of(batch["video"]))
    net.train(was_training)
    err = (pred - batch["lips"].reshape(pred.shape)).norm(dim=-1).mean().item()
    return {"val_point_err_px": err}


def train_landmarks(
    net: LipLandmarkNet,
    data: GenWindows,
    cfg: StageConfig,
    log: Log | None = print,
    val: GenWindows | None = None,
) -> list[dict[str, float]]:
    """Regress the lip points of every frame (smooth L1, with brightness/contrast jitter)."""
    opt = _adam(net.parameters(), cfg)

    def step(batch: dict, _: int) -> dict[str, float]:
        x = frames_of(batch["video"])
        gain = 1 + 0.2 * (torch.rand(len(x), 1, 1, 1, device=x.device) - 0.5)
        x = x * gain + 0.2 * (torch.rand(len(x), 3, 1, 1, device=x.device) - 0.5)
        loss = F.smooth_l1_loss(net(x.clamp(-1, 1)), batch["lips"].reshape(len(x), -1, 2))
        _update(opt, loss)
        return {"loss": loss.item()}

    return _loop(step, data, cfg, "landmarks", log, (lambda: landmark_error(net, val)) if val else None)


def train_autoencoder(
    net: VideoAutoencoder, data: GenWindows, cfg: StageConfig, log: Log | None = print
) -> list[dict[str, float]]:
    """L1 reconstruction of real windows."""
    opt = _adam(net.parameters(), cfg)

    def step(batch: dict, _: int) -> dict[str, float]:
        loss = F.l1_loss(net(batch["video"]), batch["video"])
        _update(opt, loss)
        return {"loss": loss.item()}

    return _loop(step, data, cfg, "autoencoder", log)


def correlation_contrast(
    nets: CorrelationNets, audio: torch.Tensor, flow: torch.Tensor, temperature: float = 0.1
) -> tuple[torch.Tensor, torch.Tensor]:
    """(InfoNCE loss of matching audio/flow windows against the batch's others, match accuracy)."""
    fa = F.normalize(nets.audio_features(audio_derivative(audio)).flatten(1), dim=1)
    ff = F.normalize(nets.flow_features(flow).flatten(1), dim=1)
    logits = fa @ ff.T / temperature
    target = torch.arange(len(fa), device=fa.device)
    loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
    return loss, (logits.argmax(1) == target).float().mean()


def train_correlation(
    nets: CorrelationNets, flow_net: LipFlowNet, data: GenWindows, cfg: StageConfig, log: Log | None = print
) -> list[dict[str, float]]:
    """Eq. 1 on real windows plus the in-batch contrast (see the module doc); flow_net frozen."""
    opt = _adam(nets.parameters(), cfg)
    flow_net.eval().requires_grad_(False)

    def step(batch: dict, _: int) -> dict[str, float]:
        with torch.no_grad():
            flow = flow_net.video_flow(batch["video"])
        contrast, acc = correlation_contrast(nets, batch["audio"], flow)
        corr = correlation_loss(nets, batch["audio"], flow)
        loss = contrast + corr
        _update(opt, loss)
        return {"loss": loss.item(), "corr": corr.item(), "match_acc": acc.item()}

    return _loop(step, data, cfg, "correlation", log)


def discriminator_loss(
    d: ThreeStreamDiscriminator, flow_net: LipFlowNet, batch: dict, fake: torch.Tensor, mismatch: float = 0.5
) -> torch.Tensor:
    """Eq. 4 with the mismatch strategy: real (video, audio) -> 1; fake video with its audio -> 0;
    real video with another window's audio -> 0 (weights 1 - mismatch and mismatch)."""
    real, audio = batch["video"], batch["audio"]
    with torch.no_grad():
        real_flow, fake_flow = flow_net.video_flow(real), flow_net.video_flow(fake.detach())
    bce = F.binary_cross_entropy_with_logits
    lr = d(real, real_flow, audio)
    lf = d(fake.detach(), fake_flow, audio)
    lm = d(real, real_flow, batch["wrong_audio"])
    return (
        bce(lr, torch.ones_like(lr))
        + (1 - mismatch) * bce(lf, torch.zeros_like(lf))
        + mismatch * bce(lm, torch.zeros_like(lm))
    )


@dataclass
class Critics:
    """The frozen helpers of the generator loss and the discriminator being trained with it."""

    flow: LipFlowNet
    corr: CorrelationNets | None
    autoencoder: VideoAutoencoder | None
    disc: ThreeStreamDiscriminator | None


def generator_loss(
    g: LipGenerator, critics: Critics, batch: dict, w: LossWeights
) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """(total loss, generated video, per-term values) for one batch."""
    fake = g(batch["audio"], batch["identity"])
    terms = {"rec": F.l1_loss(fake, batch["video"])}
    need_flow = (w.corr and critics.corr is not None) or (w.gan and critics.disc is not None)
    flow = critics.flow.video_flow(fake) if need_flow else None
    if w.corr and critics.corr is not None:
        terms["corr"] = correlation_loss(critics.corr, batch["audio"], flow)
    if w.perc and critics.autoencoder is not None:
        terms["perc"] = perceptual_loss(critics.autoencoder, fake, batch["video"])
    if w.gan and critics.disc is not None:
        logit = critics.disc(fake, flow, batch["audio"])
        terms["gan"] = F.binary_cross_entropy_with_logits(logit, torch.ones_like(logit))
    weight = {"rec": w.rec, "corr": w.corr, "perc": w.perc, "gan": w.gan}
    total = sum(weight[k] * v for k, v in terms.items())
    return total, fake, {k: v.item() for k, v in terms.items()}


def train_generator(
    g: LipGenerator,
    critics: Critics,
    data: GenWindows,
    cfg: StageConfig,
    weights: LossWeights = LossWeights(),
    log: Log | None = print,
    val_fn: Callable[[], dict[str, float]] | None = None,
) -> list[dict[str, float]]:
    """Alternate discriminator and generator steps (when w.gan > 0); critics other than the
    discriminator stay frozen."""
    for net in (critics.flow, critics.corr, critics.autoencoder):
        if net is not None:
            net.eval().requires_grad_(False)
    opt_g = _adam(g.parameters(), cfg)
    opt_d = _adam(critics.disc.parameters(), cfg) if weights.gan and critics.disc is not None else None

    def step(batch: dict, _: int) -> dict[str, float]:
        g.train()
        total, fake, terms = generator_loss(g, critics, batch, weights)
        opt_g.zero_grad()
        total.backward()
        opt_g.step()
        if opt_d is not None:
            d_loss = discriminator_loss(critics.disc, critics.flow, batch, fake, weights.mismatch)
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
            terms["d_loss"] = d_loss.item()
        return {"loss": total.item(), **terms}

    return _loop(step, data, cfg, "generator", log, val_fn)


def frozen(module: nn.Module) -> nn.Module:
    """Eval mode, no gradients (in place); returns the module."""
    return module.eval().requires_grad_(False)
