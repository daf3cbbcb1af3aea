"""VocaLiST-style cross-modal transformer sync classifier, scaled down for little data.

After Kadandale, Montesinos & Haro, "VocaLiST: an audio-visual synchronisation model for lips and
voices" (Interspeech 2022). What follows the paper (and its public code):

* input: 5 video frames (0.2 s at 25 fps) and the matching audio; output: one sync logit,
  trained with binary cross-entropy on in-sync pairs vs. pairs with a random temporal
  misalignment, sampled equally (the trainer builds the pairs and the loss);
* a visual encoder that keeps the time axis (one token per frame; the paper's is a 3D CNN,
  ours too) and an audio encoder over the log-mel that keeps the time axis (one token per
  log-mel row, as the paper's one per mel frame, with ``audio_stride=1``);
* positional embeddings, then three cross-modal transformer stacks (the MulT design the
  paper follows): A->V (queries: audio tokens, keys/values: video tokens), V->A (the roles
  swapped) and a fusion stack whose queries are the A->V output and whose keys/values are
  the V->A output;
* max pooling over time of the fusion output, a tanh linear layer, a linear layer to the logit;
* longer contexts by averaging the 5-frame scores over the window (done by the caller).

What is scaled down or changed: the paper's model has 80 M parameters (d_model 512, 8 heads,
4 layers per stack, a deep residual 3D CNN over RGB lower-face crops, a residual 2D CNN over
an 80-band mel-spectrogram); ours has a few hundred thousand (``small``: d_model 64, 4 heads,
2 layers per cross stack, 1 fusion layer, 3 plain conv blocks over 48x48 grey mouth crops, 1D
convs over 40 log-mel bands at 10 ms). Layers are pre-norm with nn.MultiheadAttention. Positions: the paper
(MulT code) adds index-based sinusoids to each modality separately and sets MulT's future
mask; we put both modalities on one clock instead, since sync is about *when*:

* fixed sinusoids of each token's centre time in frames (a video frame and the audio rows it
  spans get the same code), plus learned per-token embeddings (zero at init);
* with ``time_bias`` (default), an ALiBi-style bias ``-slope_h * |t_q - t_k|`` on every
  cross-attention logit, slopes learned per head: attention starts out looking at the same
  moment in the other modality, which is what an in-sync test needs. Without it, a tiny model
  sat at chance for ~150 steps on our synthetic test before finding the alignment; with it,
  it learns within ~50. ``time_bias=False`` is the paper-like variant.
* with ``similarity`` (default; not in the paper), a similarity skip: the logit gets
  ``scale * mean_t cos(P_v v_t, P_a a_t)`` added, v_t the visual token of frame t and a_t the
  mean of the audio tokens of that frame, before any attention. On real data (~6 minutes) the
  transformer alone never left chance (BCE at ln 2, the multi-way loss at ln 8 for 600
  steps); the cosine gives the encoders a first-order training signal, as in SyncNet, and
  the cross-modal stacks work on top of it. ``similarity=False`` is the paper's head.

Pure tensor code: no I/O, no device choice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from avsync.models.syncnet import AUDIO_ROWS, FRAMES, MOUTH_SIZE, N_MELS, ROWS_PER_FRAME, PresetMixin
from avsync.models.wlos import SimilaritySkip


def time_encoding(times: torch.Tensor, dim: int, max_period: float = 64.0) -> torch.Tensor:
    """(T,) times in video frames -> (T, dim) sinusoidal codes (periods 2 .. ``max_period`` frames).

    Both modalities are encoded on the same clock (a video frame and the audio rows it spans
    get similar codes), so attending to "the same moment" is easy to learn.
    """
    half = dim // 2
    periods = 2.0 * (max_period / 2.0) ** (torch.arange(half, dtype=torch.float32) / max(half - 1, 1))
    angles = 2 * math.pi * times[:, None].float() / periods[None, :]
    enc = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    return F.pad(enc, (0, dim - 2 * half))


def _norm(kind: str, channels: int, dims: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm1d(channels) if dims == 1 else nn.BatchNorm3d(channels)
    if kind == "group":
        return nn.GroupNorm(min(4, channels), channels)
    raise ValueError(f"unknown norm {kind!r} (batch|group)")


@dataclass(frozen=True)
class VocaLiSTConfig(PresetMixin):
    """Sizes of a VocaLiST.

    video_channels: output channels of the 3D conv blocks (3x3x3 kernels, spatial stride 2,
    time kept). audio_channels: 1D conv blocks over log-mel rows (mel bands as channels);
    audio_stride: log-mel rows per audio token (1, 2 or 4; must divide audio_rows).
    d_model / heads / ff_mult: transformer width, attention heads, feed-forward width factor.
    cross_layers: layers in each of the A->V and V->A stacks; fusion_layers: in the fusion
    stack. dropout: on residual branches, embeddings and the head; attn_dropout: on the
    attention weights. norm: "batch" or "group" in the conv encoders. time_bias: add the
    learned ALiBi-style time-distance bias to every cross-attention (see the module docstring).
    similarity: add the per-frame similarity skip to the logit (module docstring).
    """

    frames: int = FRAMES
    audio_rows: int = AUDIO_ROWS
    n_mels: int = N_MELS
    mouth_size: int = MOUTH_SIZE
    video_channels: tuple[int, ...] = (16, 32, 64)
    audio_channels: tuple[int, ...] = (64, 64)
    audio_stride: int = 1
    d_model: int = 64
    heads: int = 4
    ff_mult: int = 4
    cross_layers: int = 2
    fusion_layers: int = 1
    norm: str = "batch"
    dropout: float = 0.1
    attn_dropout: float = 0.0
    time_bias: bool = True
    similarity: bool = True

    def __post_init__(self) -> None:
        if self.audio_rows != ROWS_PER_FRAME * self.frames:
            raise ValueError(f"audio_rows must be {ROWS_PER_FRAME} * frames = "
                             f"{ROWS_PER_FRAME * self.frames}, got {self.audio_rows}")
        if self.audio_stride < 1 or self.audio_rows % self.audio_stride:
            raise ValueError(f"audio_stride {self.audio_stride} must divide audio_rows {self.audio_rows}")
        if self.d_model % self.heads:
            raise ValueError(f"d_model {self.d_model} must be a multiple of heads {self.heads}")
        if not self.video_channels or not self.audio_channels:
            raise ValueError("video_channels and audio_channels need at least one entry")

    @property
    def audio_tokens(self) -> int:
        return self.audio_rows // self.audio_stride

    @classmethod
    def debug(cls) -> VocaLiSTConfig:
        return cls(video_channels=(4, 8, 8), audio_channels=(16,), audio_stride=2, d_model=16,
                   heads=2, ff_mult=2, cross_layers=1, fusion_layers=1, dropout=0.0)

    @classmethod
    def small(cls) -> VocaLiSTConfig:
        return cls()


class VideoEncoder(nn.Module):
    """(B, F, H, W) mouth crops -> (B, F, d) tokens: 3D convs keeping time, 3x3 pool, linear."""

    def __init__(self, channels: tuple[int, ...], d_model: int, norm: str) -> None:
        super().__init__()
        blocks, c_in = [], 1
        for c in channels:
            blocks += [nn.Conv3d(c_in, c, 3, stride=(1, 2, 2), padding=1, bias=False),
                       _norm(norm, c, 3), nn.ReLU(inplace=True)]
            c_in = c
        self.convs = nn.Sequential(*blocks)
        self.proj = nn.Linear(c_in * 9, d_model)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        x = self.convs(video.unsqueeze(1))  # (B, C, F, h, w)
        x = F.adaptive_avg_pool3d(x, (x.shape[2], 3, 3))
        return self.proj(x.permute(0, 2, 1, 3, 4).flatten(2))  # (B, F, C*9) -> (B, F, d)


class AudioEncoder(nn.Module):
    """(B, R, n_mels) log-mel -> (B, R // stride, d) tokens.

    1D convs (kernel 3) over rows with the mel bands as channels; when stride > 1, the first
    block after the input conv is a kernel-``stride`` stride-``stride`` conv, so that token t
    covers rows t*stride .. (t+1)*stride - 1 (aligned to the frame clock for stride 4).
    """

    def __init__(self, n_mels: int, channels: tuple[int, ...], stride: int, d_model: int,
                 norm: str) -> None:
        super().__init__()
        blocks, c_in = [], n_mels
        for i, c in enumerate(channels):
            blocks += [nn.Conv1d(c_in, c, 3, padding=1, bias=False), _norm(norm, c, 1), nn.ReLU(inplace=True)]
            c_in = c
            if i == 0 and stride > 1:
                blocks += [nn.Conv1d(c, c, stride, stride=stride, bias=False), _norm(norm, c, 1),
                           nn.ReLU(inplace=True)]
        self.convs = nn.Sequential(*blocks)
        self.proj = nn.Linear(c_in, d_model)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.proj(self.convs(audio.transpose(1, 2)).transpose(1, 2))


class CrossModalLayer(nn.Module):
    """Pre-norm transformer layer whose queries come from ``x`` and keys/values from ``y``.

    x: (B, Tx, d), y: (B, Ty, d), bias: None or a float mask added to the attention logits,
    (Tx, Ty) or (B * heads, Tx, Ty) -> (B, Tx, d).
    """

    def __init__(self, d_model: int, heads: int, ff_mult: int, dropout: float, attn_dropout: float) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(d_model)
        self.norm_kv = nn.LayerNorm(d_model)
        self.attn = nn.MultiheadAttention(d_model, heads, dropout=attn_dropout, batch_first=True)
        self.norm_ff = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, ff_mult * d_model), nn.GELU(), nn.Dropout(dropout),
                                nn.Linear(ff_mult * d_model, d_model))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, y: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        kv = self.norm_kv(y)
        h, _ = self.attn(self.norm_q(x), kv, kv, attn_mask=bias, need_weights=False)
        x = x + self.drop(h)
        return x + self.drop(self.ff(self.norm_ff(x)))


class CrossModalStack(nn.Module):
    """``layers`` CrossModalLayers (the same keys/values source for each) and a final LayerNorm.

    With ``time_bias``, each head adds ``-slope * |t_query - t_key|`` (times in frames on the
    shared clock) to its attention logits (ALiBi-style); the slopes are learned per head
    (initialised from 2 down to 1/4 per frame) and shared by the stack's layers.
    """

    def __init__(self, layers: int, d_model: int, heads: int, ff_mult: int, dropout: float,
                 attn_dropout: float, time_bias: bool = True) -> None:
        super().__init__()
        self.heads = heads
        self.layers = nn.ModuleList(CrossModalLayer(d_model, heads, ff_mult, dropout, attn_dropout)
                                    for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)
        if time_bias:
            init = 2.0 * (1 / 8) ** (torch.arange(heads) / max(heads - 1, 1))
            self.log_slopes = nn.Parameter(init.log())
        else:
            self.log_slopes = None

    def forward(self, x: torch.Tensor, y: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
        """x: (B, Tx, d) queries, y: (B, Ty, d) keys/values, tx (Tx,), ty (Ty,) their times."""
        bias = None
        if self.log_slopes is not None:
            dist = (tx[:, None] - ty[None, :]).abs()  # (Tx, Ty)
            bias = -self.log_slopes.exp()[:, None, None] * dist  # (heads, Tx, Ty)
            bias = bias.repeat(x.shape[0], 1, 1).to(x.dtype)  # (B * heads, Tx, Ty), batch-major
        for layer in self.layers:
            x = layer(x, y, bias)
        return self.norm(x)


class VocaLiST(nn.Module):
    """Cross-modal transformer sync classifier.

    forward(video (B, 5, 48, 48) float, audio (B, 20, 40) float) -> (B,) logit that the pair is
    in sync (train with BCE-with-logits). Video: grey levels standardised as
    ``(x / 255 - 0.5) / 0.25``; audio: log-mel (10 ms rows, 4 per 25 fps frame) standardised per
    clip and band. Frame / row counts are ``config.frames`` / ``config.audio_rows``.
    """

    visual_kind: ClassVar[str] = "mouth"
    output: ClassVar[str] = "pair"

    def __init__(self, config: VocaLiSTConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or VocaLiSTConfig.small()
        d = c.d_model
        self.video = VideoEncoder(c.video_channels, d, c.norm)
        self.audio = AudioEncoder(c.n_mels, c.audio_channels, c.audio_stride, d, c.norm)
        # positions: fixed sinusoids of time on the shared frame clock (token centres, in frames)
        # plus learned per-token embeddings (zero at init)
        v_times = torch.arange(c.frames) + 0.5
        a_times = (torch.arange(c.audio_tokens) + 0.5) * c.audio_stride / ROWS_PER_FRAME
        self.register_buffer("t_video", v_times, persistent=False)
        self.register_buffer("t_audio", a_times, persistent=False)
        self.register_buffer("time_video", time_encoding(v_times, d)[None], persistent=False)
        self.register_buffer("time_audio", time_encoding(a_times, d)[None], persistent=False)
        self.pos_video = nn.Parameter(torch.zeros(1, c.frames, d))
        self.pos_audio = nn.Parameter(torch.zeros(1, c.audio_tokens, d))
        self.embed_drop = nn.Dropout(c.dropout)
        stack = (c.heads, c.ff_mult, c.dropout, c.attn_dropout, c.time_bias)
        self.a2v = CrossModalStack(c.cross_layers, d, *stack)  # queries: audio; keys/values: video
        self.v2a = CrossModalStack(c.cross_layers, d, *stack)  # queries: video; keys/values: audio
        self.fusion = CrossModalStack(c.fusion_layers, d, *stack)  # queries: A->V; keys/values: V->A
        self.fc = nn.Linear(d, d)
        self.head_drop = nn.Dropout(c.dropout)
        self.classifier = nn.Linear(d, 1)
        self.similarity = SimilaritySkip(d, d, d) if c.similarity else None

    def forward(self, video: torch.Tensor, audio: torch.Tensor,
                candidates: torch.Tensor | None = None) -> torch.Tensor:
        """(B, F, 48, 48), (B, 4F, 40) -> (B,) sync logits of the pairs (video[i], audio[i]).

        With ``candidates`` (B, K) long indices into ``audio`` (U windows, any U), returns
        (B, K) logits of the pairs (video[i], audio[candidates[i, k]]): the encoders run once
        per window, the cross-modal stacks per pair.
        """
        c = self.config
        if video.dim() != 4 or video.shape[1] != c.frames:
            raise ValueError(f"video must be (B, {c.frames}, H, W), got {tuple(video.shape)}")
        if audio.dim() != 3 or audio.shape[1:] != (c.audio_rows, c.n_mels):
            raise ValueError(f"audio must be (B, {c.audio_rows}, {c.n_mels}), got {tuple(audio.shape)}")
        if candidates is None and audio.shape[0] != video.shape[0]:
            raise ValueError(f"batch sizes differ: video {len(video)}, audio {len(audio)}")
        v0, a0 = self.video(video), self.audio(audio)  # (B, F, d), (U, Ta, d)
        if candidates is not None:
            b, k = candidates.shape
            v0 = v0.repeat_interleave(k, 0)
            a0 = a0[candidates.reshape(-1)]
        logit = self._pair_logits(v0, a0)
        return logit if candidates is None else logit.view(b, k)

    def _pair_logits(self, v0: torch.Tensor, a0: torch.Tensor) -> torch.Tensor:
        """Encoder tokens (N, F, d), (N, Ta, d) -> (N,) logits."""
        c = self.config
        v = self.embed_drop(v0 + self.time_video + self.pos_video)
        a = self.embed_drop(a0 + self.time_audio + self.pos_audio)
        ta, tv = self.t_audio, self.t_video
        av = self.a2v(a, v, ta, tv)  # (N, Ta, d)
        va = self.v2a(v, a, tv, ta)  # (N, F, d)
        fused = self.fusion(av, va, ta, tv)  # (N, Ta, d)
        pooled = fused.max(dim=1).values  # max over time, as in the paper's code
        h = torch.tanh(self.fc(pooled))
        logit = self.classifier(self.head_drop(h)).squeeze(-1)
        if self.similarity is not None:  # audio tokens of each frame averaged: (N, F, d)
            a_frames = a0.reshape(len(a0), c.frames, -1, a0.shape[-1]).mean(2)
            logit = logit + self.similarity(v0, a_frames, mean_axis=1)
        return logit
