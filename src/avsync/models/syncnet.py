"""SyncNet (Chung & Zisserman 2016), sized for little data.

Two towers map 0.2 s of each modality to L2-normalised embeddings whose distance is small when
the lips and the voice are in sync:

* video: 5 grey 48x48 mouth crops stacked as channels (time = channels, as in SyncNet's
  "early fusion" 2D variant) -> 2D convs -> 3x3 spatial pooling -> linear -> (D,);
* audio: 20 log-mel rows (10 ms hops, 4 per 25 fps frame) x 40 mel bands -> 2D convs that
  pool frequency fully but keep 5 time steps (one per video frame) -> linear -> (D,).

Keeping the time layout to the last linear layer (no global pooling over time) is what makes
the embedding sensitive to a 1-frame shift.

The modules hold pure tensor code: no I/O, no device choice (the caller moves them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

FRAMES: int = 5
"""Video frames per window (0.2 s at 25 fps)."""

ROWS_PER_FRAME: int = 4
"""Log-mel rows per video frame on the frame clock (10 ms hops at 25 fps)."""

AUDIO_ROWS: int = FRAMES * ROWS_PER_FRAME
"""Log-mel rows per window (20 rows = 0.2 s)."""

N_MELS: int = 40
MOUTH_SIZE: int = 48


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(4, channels), channels)
    raise ValueError(f"unknown norm {kind!r} (batch|group)")


def _conv_block(c_in: int, c_out: int, stride: tuple[int, int], norm: str) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                         _norm(norm, c_out), nn.ReLU(inplace=True))


class AudioTower(nn.Module):
    """(B, rows, n_mels) log-mel windows -> (B, D) L2-normalised embeddings.

    The first block halves frequency only; later blocks halve time and frequency until the
    time axis has ``rows // 4`` steps (one per video frame); frequency is then averaged away
    and the (channels x time) map goes through a linear layer.
    """

    def __init__(self, channels: tuple[int, ...], embed_dim: int, rows: int = AUDIO_ROWS,
                 n_mels: int = N_MELS, norm: str = "batch", dropout: float = 0.0) -> None:
        super().__init__()
        blocks, c_in = [], 1
        for i, c in enumerate(channels):
            # Time halves in blocks 1 and 2 only (20 rows -> 5 steps), frequency in every block.
            stride = (2 if i in (1, 2) else 1, 2)
            blocks.append(_conv_block(c_in, c, stride, norm))
            c_in = c
        self.convs = nn.Sequential(*blocks)
        self.time_steps = rows // ROWS_PER_FRAME  # one step per video frame
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(c_in * self.time_steps, embed_dim)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """audio: (B, rows, n_mels) float, clip-standardised log-mel. Returns (B, D)."""
        x = self.convs(audio.unsqueeze(1))  # (B, C, rows', mels')
        x = F.adaptive_avg_pool2d(x, (self.time_steps, 1)).flatten(1)
        return F.normalize(self.fc(self.drop(x)), dim=-1)


class MouthTower(nn.Module):
    """(B, frames, 48, 48) grey mouth crops (frames as channels) -> (B, D) unit embeddings."""

    def __init__(self, channels: tuple[int, ...], embed_dim: int, frames: int = FRAMES,
                 norm: str = "batch", dropout: float = 0.0) -> None:
        super().__init__()
        blocks, c_in = [], frames
        for c in channels:
            blocks.append(_conv_block(c_in, c, (2, 2), norm))
            c_in = c
        self.convs = nn.Sequential(*blocks)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(c_in * 9, embed_dim)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """video: (B, frames, H, W) float, standardised grey levels. Returns (B, D)."""
        x = F.adaptive_avg_pool2d(self.convs(video), 3).flatten(1)
        return F.normalize(self.fc(self.drop(x)), dim=-1)


class PresetMixin:
    """``Config.preset("debug" | "small")`` for the model config dataclasses."""

    PRESETS: ClassVar[tuple[str, ...]] = ("debug", "small")

    @classmethod
    def preset(cls, name: str):  # noqa: ANN206  (returns the subclass)
        if name not in cls.PRESETS:
            raise ValueError(f"unknown preset {name!r} ({'|'.join(cls.PRESETS)})")
        return getattr(cls, name)()


@dataclass(frozen=True)
class EmbeddingConfig(PresetMixin):
    """Fields every embedding model shares: the audio tower (``audio_channels``), the window
    (``frames``, ``audio_rows``, ``n_mels``), embed_dim D, norm, dropout, and the Perfect-Match
    softmax temperature (cosine / temperature, learned when ``learn_temperature``)."""

    audio_channels: tuple[int, ...] = (16, 32, 64, 96)
    embed_dim: int = 64
    frames: int = FRAMES
    audio_rows: int = AUDIO_ROWS
    n_mels: int = N_MELS
    norm: str = "batch"
    dropout: float = 0.1
    temperature: float = 0.07
    learn_temperature: bool = True


@dataclass(frozen=True)
class SyncNetConfig(EmbeddingConfig):
    """Sizes of a SyncNet. ``debug()`` is tiny (tests), ``small()`` fits a few hours of data.

    video_channels / audio_channels: output channels of each stride-2 conv block.
    embed_dim: embedding size D. temperature: initial softmax temperature of the
    Perfect-Match loss (cosine / temperature), learned when ``learn_temperature``.
    norm: "batch" or "group" normalisation in the conv blocks.
    """

    video_channels: tuple[int, ...] = (24, 48, 64, 96)
    mouth_size: int = MOUTH_SIZE

    @classmethod
    def debug(cls) -> SyncNetConfig:
        return cls(video_channels=(8, 16, 16), audio_channels=(8, 16, 16), embed_dim=32,
                   dropout=0.0)

    @classmethod
    def small(cls) -> SyncNetConfig:
        return cls()



class EmbeddingModel(nn.Module):
    """Common part of the embedding sync models: a learned logit scale and the contract

    ``forward(video, audio) -> (v_emb (B, D), a_emb (B, D))``, both L2-normalised, plus
    ``embed_video`` / ``embed_audio`` to run one tower alone (inference shares the audio
    embeddings between windows and shifts).
    """

    visual_kind: ClassVar[str] = ""
    output: ClassVar[str] = "embedding"

    def _init_scale(self, temperature: float, learn: bool) -> None:
        value = torch.tensor(float(-torch.log(torch.tensor(temperature))))
        if learn:
            self.log_scale = nn.Parameter(value)
        else:
            self.register_buffer("log_scale", value)

    @property
    def logit_scale(self) -> torch.Tensor:
        """1 / temperature, clamped to [1, 100] (a 0-d tensor)."""
        return self.log_scale.exp().clamp(1.0, 100.0)

    def embed_video(self, video: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def embed_audio(self, audio: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.embed_video(video), self.embed_audio(audio)


class SyncNet(EmbeddingModel):
    """Mouth-crop SyncNet.

    forward(video (B, 5, 48, 48) float, audio (B, 20, 40) float) -> (v_emb (B, D), a_emb (B, D)),
    rows of unit L2 norm. Video: grey levels standardised as ``(x / 255 - 0.5) / 0.25``;
    audio: log-mel standardised per clip and band (see ``avsync.models.neural``).
    """

    visual_kind: ClassVar[str] = "mouth"

    def __init__(self, config: SyncNetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or SyncNetConfig.small()
        self.video = MouthTower(config.video_channels, config.embed_dim, config.frames,
                                config.norm, config.dropout)
        self.audio = AudioTower(config.audio_channels, config.embed_dim, config.audio_rows,
                                config.n_mels, config.norm, config.dropout)
        self._init_scale(config.temperature, config.learn_temperature)

    def embed_video(self, video: torch.Tensor) -> torch.Tensor:
        """video: (B, frames, 48, 48) float -> (B, D)."""
        return self.video(video)

    def embed_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """audio: (B, 20, 40) float -> (B, D)."""
        return self.audio(audio)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
