"""Deterministic random weights and inputs shared by tests/test_peers*.py and the fixture harness
(tests/fixtures/make_peers_parity.py): integer-only pixels, seeded torch/numpy generators."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

SEED = 1234
SYNCNET_FRAMES = 24
EXPERT_FRAMES = 24
S3FD_IMAGE_HW = (480, 640)
S3FD_SCALE = 0.25
S3FD_CONF_TH = 0.5


def random_state(model: nn.Module, seed: int = SEED) -> dict[str, torch.Tensor]:
    """A state dict for ``model`` with He-scaled conv/linear weights and non-trivial BatchNorm
    statistics (so eval-mode BN is not the identity), reproducible from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for name, mod in model.named_modules():
        p = f"{name}." if name else ""
        if isinstance(mod, (nn.Conv2d, nn.Conv3d, nn.Linear)):
            w = state[p + "weight"]
            state[p + "weight"] = torch.randn(w.shape, generator=g) * math.sqrt(2.0 / w[0].numel())
            state[p + "bias"] = torch.randn(w.shape[0], generator=g) * 0.01
        elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
            n = state[p + "weight"].shape[0]
            state[p + "weight"] = 1.0 + 0.1 * torch.randn(n, generator=g)
            state[p + "bias"] = 0.1 * torch.randn(n, generator=g)
            state[p + "running_mean"] = 0.1 * torch.randn(n, generator=g)
            state[p + "running_var"] = 0.5 + torch.rand(n, generator=g)
    return state


def s3fd_state(seed: int = SEED) -> dict[str, torch.Tensor]:
    """Random S3FD weights with damped heads, so that scores spread around 0.5 without ties and
    boxes stay near their anchors (the undamped heads saturate at score 1 and 1e10 px boxes)."""
    from avsync.peers.s3fd import S3FDNet

    state = random_state(S3FDNet(), seed)
    for k in state:
        if k.startswith(("loc.", "conf.")):
            state[k] = state[k] * 0.02
    return state


def frames(n: int, side: int, seed: int = SEED) -> np.ndarray:
    """(n, side, side, 3) uint8 frames: blocky moving pattern, integer arithmetic only."""
    t, y, x, c = np.meshgrid(np.arange(n), np.arange(side), np.arange(side), np.arange(3), indexing="ij")
    v = ((x + 3 * t) // 8) * 37 + (y // 8) * 91 + c * 50 + ((x * y + seed) % 13) * 5 + t * 7
    return (v % 256).astype(np.uint8)


def pcm(n_samples: int, seed: int = SEED) -> np.ndarray:
    """(n,) int16 noisy amplitude-modulated tone."""
    rng = np.random.Generator(np.random.PCG64(seed))
    i = np.arange(n_samples)
    tone = 6000 * np.sin(2 * np.pi * 180 * i / 16000) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * i / 16000))
    return np.clip(np.round(tone + rng.standard_normal(n_samples) * 800), -32768, 32767).astype(np.int16)


def s3fd_image(seed: int = SEED) -> np.ndarray:
    """(480, 640, 3) uint8 RGB test image (smooth blobs, integer arithmetic only)."""
    h, w = S3FD_IMAGE_HW
    y, x, c = np.meshgrid(np.arange(h), np.arange(w), np.arange(3), indexing="ij")
    d = ((x - 320) ** 2 + (y - 220) ** 2) // 400
    v = 200 - d + ((x // 16 + y // 16 + seed) % 4) * 20 + c * 15
    return np.clip(v, 0, 255).astype(np.uint8)
