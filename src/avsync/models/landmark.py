"""Landmark/blendshape sync model: lip shape sequences instead of pixels.

Per frame the visual input is the 40 identity-normalised lip landmarks (x, y flattened, 80
values) and the 10 mouth blendshapes, standardised per clip (so a speaker's resting lip shape
is removed). A small temporal conv net over a 5-frame window maps them to an L2-normalised
embedding; the audio branch is SyncNet's (20 log-mel rows x 40 bands per 5 frames).

Far fewer inputs than a 48x48 crop make it cheap and less prone to learning identity or
lighting, which matters with little training data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from avsync.models.syncnet import (
    FRAMES,
    AudioTower,
    EmbeddingConfig,
    EmbeddingModel,
)

N_LIP_POINTS: int = 40
N_BLEND: int = 10
FRAME_FEATURES: int = 2 * N_LIP_POINTS + N_BLEND
"""Per-frame visual features: lips (40 x 2 flattened) then blendshapes (10)."""


def _lip_matrix(lips: np.ndarray, blend: np.ndarray) -> np.ndarray:
    return np.concatenate([np.asarray(lips, np.float32).reshape(len(lips), -1),
                           np.asarray(blend, np.float32)], axis=1)


def lip_stats(lips: np.ndarray, blend: np.ndarray, valid: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """(mean (90,), std (90,)) of the lip + blendshape features over the valid frames."""
    x = _lip_matrix(lips, blend)
    ok = np.asarray(valid, bool) & np.isfinite(x).all(1)
    if ok.sum() < 2:
        return np.zeros(x.shape[1], np.float32), np.ones(x.shape[1], np.float32)
    return x[ok].mean(0), np.maximum(x[ok].std(0), 1e-3)


def lip_features(lips: np.ndarray, blend: np.ndarray, valid: np.ndarray,
                 stats: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """(T, 40, 2) lips + (T, 10) blendshapes -> (T, 90) float32 standardised per clip.

    stats: (mean, std) to use (a whole track's, when scoring a window of it); default: this
    input's own valid frames. Invalid or non-finite entries become 0 (the clip mean).
    """
    x = _lip_matrix(lips, blend)
    mu, sd = stats if stats is not None else lip_stats(lips, blend, valid)
    ok = np.asarray(valid, bool) & np.isfinite(x).all(1)
    x = (x - mu) / sd
    x[~ok] = 0.0
    return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


class LipSequenceTower(nn.Module):
    """(B, frames, F) per-frame lip features -> (B, D) unit embeddings.

    Conv1d layers over time (kernel 3, 'same' padding, so every frame keeps its position),
    then the (channels x frames) map is flattened into a linear layer.
    """

    def __init__(self, n_features: int, hidden: int, layers: int, embed_dim: int,
                 frames: int = FRAMES, dropout: float = 0.0) -> None:
        super().__init__()
        self.input_norm = nn.BatchNorm1d(n_features)
        blocks, c_in = [], n_features
        for _ in range(layers):
            blocks += [nn.Conv1d(c_in, hidden, 3, padding=1, bias=False), nn.BatchNorm1d(hidden),
                       nn.ReLU(inplace=True)]
            c_in = hidden
        self.convs = nn.Sequential(*blocks)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden * frames, embed_dim)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """feats: (B, frames, F) float. Returns (B, D)."""
        x = self.convs(self.input_norm(feats.transpose(1, 2)))  # (B, hidden, frames)
        return F.normalize(self.fc(self.drop(x.flatten(1))), dim=-1)


@dataclass(frozen=True)
class LandmarkSyncConfig(EmbeddingConfig):
    """Sizes of the landmark model. ``debug()`` is tiny (tests), ``small()`` for real data.

    hidden / layers: width and depth of the temporal conv net; audio_channels: the audio
    tower's conv blocks (as SyncNet's); embed_dim: D; temperature / learn_temperature: the
    Perfect-Match softmax temperature (cosine / temperature).
    """

    hidden: int = 96
    layers: int = 3
    n_features: int = FRAME_FEATURES

    @classmethod
    def debug(cls) -> LandmarkSyncConfig:
        return cls(hidden=16, layers=2, audio_channels=(8, 16, 16), embed_dim=32, dropout=0.0)

    @classmethod
    def small(cls) -> LandmarkSyncConfig:
        return cls()



class LandmarkSync(EmbeddingModel):
    """Lip-landmark + blendshape sync model.

    forward(video (B, frames, 90) float, audio (B, 20, 40) float) -> (v_emb, a_emb), each (B, D)
    with unit L2 norm. ``video`` holds per-clip standardised lips (80) + blendshapes (10).
    """

    visual_kind: ClassVar[str] = "lips"

    def __init__(self, config: LandmarkSyncConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or LandmarkSyncConfig.small()
        self.video = LipSequenceTower(config.n_features, config.hidden, config.layers,
                                      config.embed_dim, config.frames, config.dropout)
        self.audio = AudioTower(config.audio_channels, config.embed_dim, config.audio_rows,
                                config.n_mels, config.norm, config.dropout)
        self._init_scale(config.temperature, config.learn_temperature)

    def embed_video(self, video: torch.Tensor) -> torch.Tensor:
        """video: (B, frames, 90) float -> (B, D)."""
        return self.video(video)

    def embed_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """audio: (B, 20, 40) float -> (B, D)."""
        return self.audio(audio)
