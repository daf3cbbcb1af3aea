"""End-to-end offset classifier over an audio-visual similarity matrix (after Kim et al., SLT 2021).

Kim, Heo, Chung & Lee, "End-to-end lip synchronisation based on pattern classification" (SLT
2021) train the feature extractors and the offset classifier jointly: per-frame features of
both modalities give a cosine similarity matrix, which is read as an image by a classifier
that outputs the offset directly (instead of a proxy similarity loss plus a sliding-window
search). Only the paper's abstract is available to us, so everything below the level of "features
-> similarity matrix -> CNN classifier, trained end to end" is our own choice:

* video (B, F, 48, 48): a 2D CNN shared by all frames (each crop alone), 3x3 spatial pooling and
  a linear layer -> one vector per frame, then a temporal conv over frames (kernel 3, so each
  feature also sees its neighbours' lip motion) -> (B, F, D);
* audio span (B, 4F + 8S, 40) (S = ``max_shift``): 1D convs over time with the 40 mel bands as
  channels; a kernel-4 stride-4 conv makes one vector per video-frame step, aligned exactly to
  the frame clock (step j = rows 4j..4j+3), then a temporal conv over steps -> (B, F + 2S, D);
* the cosine similarity of the L2-normalised features: (B, F, F + 2S), entry (i, j) compares
  video frame i with audio step j;
* a shift-aware classifier: candidate shift k (audio late by k frames) puts the matching audio
  of frame i at step j = i + k + S, i.e. on a diagonal of the matrix. 2D convs (3x3, so they
  see neighbouring diagonals) read the matrix; the raw matrix is kept as an extra channel; the
  mean along each diagonal (``diagonal_mean``) gives (B, C + 1, 2S + 1); a small 1D conv over
  the shift axis compares neighbouring candidates and outputs one logit per shift.

The diagonal read-out makes the classifier (nearly) equivariant to shifts: a pattern learned
at one offset is recognised at every offset, which matters when a few minutes of video give
few examples per class. A classifier with a dense layer over the whole matrix (the obvious
reading of "pattern classification") would have to learn each of the 2S + 1 offsets separately.
The raw-similarity channel makes "mean cosine along the diagonal" (the SyncNet / Perfect Match
sliding-window score) available from the first step; the convs learn what to add to it.

``frames`` defaults to 5 (0.2 s, as SyncNet and VocaLiST): windows then come from the same
sampler as the other models, the per-window logits can be summed over a track as for them,
and the audio span is already 1.4 s at S = 15. The model has no layer sized by F, so it can be
trained (or run) with e.g. ``frames=9, audio_rows=36`` for more evidence per decision.

Pure tensor code: no I/O, no device choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from avsync.models.syncnet import (
    AUDIO_ROWS,
    FRAMES,
    MOUTH_SIZE,
    N_MELS,
    ROWS_PER_FRAME,
    PresetMixin,
    _conv_block,
)


def _norm1d(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm1d(channels)
    if kind == "group":
        return nn.GroupNorm(min(4, channels), channels)
    raise ValueError(f"unknown norm {kind!r} (batch|group)")


def _conv1d_block(c_in: int, c_out: int, kernel: int, stride: int, padding: int,
                  norm: str) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
                         _norm1d(norm, c_out), nn.ReLU(inplace=True))


def diagonal_mean(m: torch.Tensor) -> torch.Tensor:
    """Mean of ``m`` along each diagonal j = i + c, for c = 0 .. W - F.

    m: (B, C, F, W) with W >= F (a similarity matrix, video frame i x audio step j, with
    W = F + 2S). Returns (B, C, W - F + 1); entry c averages m[..., i, i + c] over i, i.e. the
    candidate shift k = c - S. Vectorised (one gather), differentiable.
    """
    if m.dim() != 4:
        raise ValueError(f"expected (B, C, F, W), got shape {tuple(m.shape)}")
    f, w = m.shape[-2], m.shape[-1]
    if w < f:
        raise ValueError(f"need W >= F, got F={f}, W={w}")
    rows = torch.arange(f, device=m.device)[:, None]  # (F, 1)
    cols = rows + torch.arange(w - f + 1, device=m.device)[None, :]  # (F, K)
    return m[:, :, rows, cols].mean(dim=2)  # (B, C, F, K) -> (B, C, K)


@dataclass(frozen=True)
class SimMatrixConfig(PresetMixin):
    """Sizes of a SimMatrixSync.

    frames: video frames F per window; audio_rows: 4 * frames (the window at one shift; the
    model's audio input is the whole span of ``span_rows`` = audio_rows + 8 * max_shift rows).
    max_shift: largest candidate shift S in frames (2S + 1 classes).
    video_channels: output channels of the per-frame stride-2 2D conv blocks (48 -> 6 pixels
    with 3 blocks, 3 with 4). audio_channels: (first conv over rows, stride-4 conv to frame
    steps). embed_dim: feature size D of both modalities. temporal_kernel: kernel of the
    temporal conv over frames / steps (odd). matrix_channels: 3x3 conv layers over the
    similarity matrix. head_channels / head_kernel: the 1D conv over the shift axis.
    norm: "batch" or "group". dropout: on the per-frame features before their linear layer.
    """

    frames: int = FRAMES
    audio_rows: int = AUDIO_ROWS
    n_mels: int = N_MELS
    mouth_size: int = MOUTH_SIZE
    max_shift: int = 15
    video_channels: tuple[int, ...] = (16, 32, 64, 96)
    audio_channels: tuple[int, int] = (64, 128)
    embed_dim: int = 96
    temporal_kernel: int = 3
    matrix_channels: tuple[int, ...] = (16, 16)
    head_channels: int = 16
    head_kernel: int = 5
    norm: str = "batch"
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.frames < 1 or self.max_shift < 0:
            raise ValueError(f"need frames >= 1 and max_shift >= 0, got {self.frames}, {self.max_shift}")
        if self.audio_rows != ROWS_PER_FRAME * self.frames:
            raise ValueError(f"audio_rows must be {ROWS_PER_FRAME} * frames = "
                             f"{ROWS_PER_FRAME * self.frames}, got {self.audio_rows}")
        if len(self.audio_channels) != 2:
            raise ValueError(f"audio_channels needs 2 entries, got {self.audio_channels}")
        if self.temporal_kernel % 2 == 0 or self.head_kernel % 2 == 0:
            raise ValueError("temporal_kernel and head_kernel must be odd")

    @property
    def n_shifts(self) -> int:
        """Number of candidate shifts (classes): 2 * max_shift + 1."""
        return 2 * self.max_shift + 1

    @property
    def span_rows(self) -> int:
        """Log-mel rows of the audio input: audio_rows + 8 * max_shift."""
        return self.audio_rows + 2 * ROWS_PER_FRAME * self.max_shift

    @classmethod
    def debug(cls) -> SimMatrixConfig:
        return cls(max_shift=15, video_channels=(4, 8, 16), audio_channels=(16, 24), embed_dim=24,
                   matrix_channels=(8, 8), head_channels=8, head_kernel=3, dropout=0.0)

    @classmethod
    def small(cls) -> SimMatrixConfig:
        return cls()


class FrameFeatures(nn.Module):
    """(B, F, H, W) mouth crops -> (B, F, D) features, one per frame (not normalised).

    A 2D CNN applied to each crop alone (frames folded into the batch), 3x3 average pooling
    and a linear layer, then a temporal conv over the F vectors and a 1x1 conv (linear output,
    so the cosine similarities can be negative).
    """

    def __init__(self, channels: tuple[int, ...], dim: int, temporal_kernel: int, norm: str,
                 dropout: float) -> None:
        super().__init__()
        blocks, c_in = [], 1
        for c in channels:
            blocks.append(_conv_block(c_in, c, (2, 2), norm))
            c_in = c
        self.convs = nn.Sequential(*blocks)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(c_in * 9, dim)
        self.temporal = nn.Sequential(
            _conv1d_block(dim, dim, temporal_kernel, 1, temporal_kernel // 2, norm),
            nn.Conv1d(dim, dim, 1))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        b, f, h, w = video.shape
        x = self.convs(video.reshape(b * f, 1, h, w))
        x = F.adaptive_avg_pool2d(x, 3).flatten(1)  # (B*F, C*9)
        x = self.fc(self.drop(x)).reshape(b, f, -1).transpose(1, 2)  # (B, D, F)
        return self.temporal(x).transpose(1, 2)  # (B, F, D)


class StepFeatures(nn.Module):
    """(B, R, n_mels) log-mel span -> (B, R // 4, D): one vector per video-frame step.

    Conv (kernel 3) over rows with the mel bands as channels, a kernel-4 stride-4 conv (step j
    pools rows 4j..4j+3), a temporal conv over steps, a 1x1 conv (linear output).
    """

    def __init__(self, n_mels: int, channels: tuple[int, int], dim: int, temporal_kernel: int,
                 norm: str) -> None:
        super().__init__()
        c0, c1 = channels
        self.net = nn.Sequential(
            _conv1d_block(n_mels, c0, 3, 1, 1, norm),
            _conv1d_block(c0, c1, ROWS_PER_FRAME, ROWS_PER_FRAME, 0, norm),
            _conv1d_block(c1, dim, temporal_kernel, 1, temporal_kernel // 2, norm),
            nn.Conv1d(dim, dim, 1))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.net(audio.transpose(1, 2)).transpose(1, 2)


class DiagonalHead(nn.Module):
    """(B, F, F + 2S) similarity matrix -> (B, 2S + 1) shift logits.

    3x3 convs over the matrix (a 1-channel image), the raw matrix concatenated as an extra
    channel, the mean along each shift's diagonal, then a 1D conv over the shift axis and a
    1x1 conv to one logit per shift.
    """

    def __init__(self, channels: tuple[int, ...], head_channels: int, head_kernel: int,
                 norm: str) -> None:
        super().__init__()
        blocks, c_in = [], 1
        for c in channels:
            blocks.append(_conv_block(c_in, c, (1, 1), norm))
            c_in = c
        self.convs = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.Conv1d(c_in + 1, head_channels, head_kernel, padding=head_kernel // 2),
            nn.ReLU(inplace=True),
            nn.Conv1d(head_channels, 1, 1))

    def forward(self, sim: torch.Tensor) -> torch.Tensor:
        m = sim.unsqueeze(1)  # (B, 1, F, W)
        x = torch.cat([m, self.convs(m)], dim=1)  # (B, C + 1, F, W)
        return self.head(diagonal_mean(x)).squeeze(1)  # (B, K)


class SimMatrixSync(nn.Module):
    """Similarity-matrix offset classifier.

    forward(video (B, F, 48, 48) float, span (B, 4F + 8S, 40) float) -> (B, 2S + 1) logits,
    S = ``config.max_shift``. Index i is the shift k = i - S in frames, positive k = audio
    late: candidate k's audio window is ``span[:, 4 * (k + S) : 4 * (k + S) + 4F]``, so the audio
    simultaneous with the video is k = 0 (index S). Train with cross-entropy over the shifts.
    Video: grey levels standardised as ``(x / 255 - 0.5) / 0.25``; audio: log-mel (10 ms rows,
    4 per 25 fps frame) standardised per clip and band. F is ``config.frames`` in training,
    but no layer depends on it: any F >= 1 works with a span of 4F + 8S rows.
    """

    visual_kind: ClassVar[str] = "mouth"
    output: ClassVar[str] = "offsets"

    def __init__(self, config: SimMatrixConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or SimMatrixConfig.small()
        self.video = FrameFeatures(config.video_channels, config.embed_dim, config.temporal_kernel,
                                   config.norm, config.dropout)
        self.audio = StepFeatures(config.n_mels, config.audio_channels, config.embed_dim,
                                  config.temporal_kernel, config.norm)
        self.classifier = DiagonalHead(config.matrix_channels, config.head_channels,
                                       config.head_kernel, config.norm)

    @property
    def shifts(self) -> torch.Tensor:
        """(2S + 1,) int64 candidate shifts in frames, in logit order (-S .. S)."""
        s = self.config.max_shift
        return torch.arange(-s, s + 1)

    def _check(self, video: torch.Tensor, span: torch.Tensor) -> None:
        if video.dim() != 4 or span.dim() != 3 or video.shape[0] != span.shape[0]:
            raise ValueError(f"expected video (B, F, H, W) and span (B, R, n_mels), got "
                             f"{tuple(video.shape)} and {tuple(span.shape)}")
        rows = ROWS_PER_FRAME * (video.shape[1] + 2 * self.config.max_shift)
        if span.shape[1] != rows or span.shape[2] != self.config.n_mels:
            raise ValueError(f"span must be (B, {rows}, {self.config.n_mels}) for {video.shape[1]} "
                             f"frames and max_shift {self.config.max_shift}, got {tuple(span.shape)}")

    def similarity(self, video: torch.Tensor, span: torch.Tensor) -> torch.Tensor:
        """(B, F, 48, 48), (B, 4F + 8S, 40) -> (B, F, F + 2S) cosine similarities in [-1, 1]."""
        self._check(video, span)
        v = F.normalize(self.video(video), dim=-1)  # (B, F, D)
        a = F.normalize(self.audio(span), dim=-1)  # (B, F + 2S, D)
        return torch.bmm(v, a.transpose(1, 2))

    def forward(self, video: torch.Tensor, span: torch.Tensor) -> torch.Tensor:
        """(B, F, 48, 48), (B, 4F + 8S, 40) -> (B, 2S + 1) shift logits."""
        return self.classifier(self.similarity(video, span))
