"""Training augmentation of mouth crops, lip features, lip flow and log-mel (on the device)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation strengths. Mouth values are in standardised grey units (1 = 64 grey levels).

    jitter_px: crop translation +- pixels (same for the 5 frames); brightness: +- offset;
    contrast: +- relative gain; blur_p / blur_sigma: probability and range of a Gaussian blur
    (pixels); noise: max std of pixel noise; lips_noise: std of noise on standardised lips;
    gain: +- offset of the standardised log-mel; floor_p / floor: probability and range of a
    noise floor (``logaddexp(x, floor)``); audio_noise: std of Gaussian noise on the log-mel.
    """

    jitter_px: int = 3
    brightness: float = 0.4
    contrast: float = 0.3
    blur_p: float = 0.3
    blur_sigma: tuple[float, float] = (0.5, 1.2)
    noise: float = 0.1
    lips_noise: float = 0.1
    gain: float = 0.3
    floor_p: float = 0.3
    floor: tuple[float, float] = (-2.0, -0.5)
    audio_noise: float = 0.05


def _uniform(n: int, lo: float, hi: float, device: torch.device) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, device=device)


def augment_mouth(x: torch.Tensor, aug: AugmentConfig) -> torch.Tensor:
    """(B, F, H, W) standardised mouth crops -> augmented copy (jitter, light, blur, noise)."""
    b, _, h, w = x.shape
    dev = x.device
    if aug.jitter_px > 0:
        shift = torch.randint(-aug.jitter_px, aug.jitter_px + 1, (b, 2), device=dev).float()
        theta = torch.zeros(b, 2, 3, device=dev)
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0
        theta[:, 0, 2], theta[:, 1, 2] = 2 * shift[:, 0] / w, 2 * shift[:, 1] / h
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="nearest", padding_mode="border", align_corners=False)
    gain = _uniform(b, 1 - aug.contrast, 1 + aug.contrast, dev)[:, None, None, None]
    x = x * gain + _uniform(b, -aug.brightness, aug.brightness, dev)[:, None, None, None]
    if aug.blur_p > 0:
        sigma = float(torch.empty(1).uniform_(*aug.blur_sigma))
        k = torch.exp(-0.5 * (torch.arange(5, device=dev) - 2.0) ** 2 / sigma**2)
        k = k / k.sum()
        c = x.shape[1]
        blurred = F.conv2d(F.pad(x, (2, 2, 0, 0), mode="replicate"), k.view(1, 1, 1, 5).repeat(c, 1, 1, 1),
                           groups=c)
        blurred = F.conv2d(F.pad(blurred, (0, 0, 2, 2), mode="replicate"),
                           k.view(1, 1, 5, 1).repeat(c, 1, 1, 1), groups=c)
        x = torch.where((torch.rand(b, device=dev) < aug.blur_p)[:, None, None, None], blurred, x)
    return x + torch.randn_like(x) * _uniform(b, 0, aug.noise, dev)[:, None, None, None]


def augment_lips(x: torch.Tensor, aug: AugmentConfig) -> torch.Tensor:
    """(B, F, 90) standardised lip features -> noisy copy."""
    return x + aug.lips_noise * torch.randn_like(x)


def augment_audio(span: torch.Tensor, aug: AugmentConfig) -> torch.Tensor:
    """(B, L, n_mels) standardised log-mel -> gain, noise floor and noise (same for all shifts)."""
    b, dev = span.shape[0], span.device
    x = span + _uniform(b, -aug.gain, aug.gain, dev)[:, None, None]
    if aug.floor_p > 0:
        floor = _uniform(b, *aug.floor, dev)[:, None, None].expand_as(x)
        use = (torch.rand(b, device=dev) < aug.floor_p)[:, None, None]
        x = torch.where(use, torch.logaddexp(x, floor), x)
    return x + aug.audio_noise * torch.randn_like(x)


def augment_flow(x: torch.Tensor, aug: AugmentConfig) -> torch.Tensor:
    """(B, F, H, W) normalised vertical lip flow -> random gain (contrast range) and noise."""
    gain = _uniform(x.shape[0], 1 - aug.contrast, 1 + aug.contrast, x.device)[:, None, None, None]
    return x * gain + aug.lips_noise * torch.randn_like(x)


def augment_visual(x: torch.Tensor, kind: str, aug: AugmentConfig) -> torch.Tensor:
    """Augment a batch of visual windows of ``kind`` ("mouth", "lips" or "flow")."""
    if kind == "mouth":
        return augment_mouth(x, aug)
    if kind == "flow":
        return augment_flow(x, aug)
    return augment_lips(x, aug)
