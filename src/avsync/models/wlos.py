"""WLOS and C3 (Kikuchi & Ozasa, "Watch, Listen Once, and Sync"), sized for little data.

Both models look at one 10-frame window (0.4 s at 25 fps) of a face track and its audio:

* ``C3`` ("classification correlation CNN") says whether the pair is in sync (the paper's
  sliding-window baseline, and the pre-training of the towers);
* ``WLOS`` regresses the audio offset d in frames directly, in one pass (the paper's point:
  no sliding window over the 19 candidate shifts).

What each paper element became here:

* Visual feature: vertical Farneback flow between consecutive 32x32 lip crops
  (``avsync.face.flow.vertical_flow``). The paper rescales the flow to [0, 1] per mini-batch;
  we divide by a fixed ``FLOW_SCALE`` and clip to +-3 (``normalise_flow``) so that one window
  at inference sees what training saw, whatever its batch.
* Audio feature: the paper's 12 MFCCs (13 computed, c0 dropped, 39 rows per 10 frames,
  normalised to [0, 1]). The project's audio features are 40-band log-mels, 4 rows per video
  frame (10 ms hops), standardised per clip and band; the MFCCs are computed INSIDE the model
  as a fixed orthonormal DCT-II of the 40 log-mel bands keeping coefficients 1..12 (a
  non-trainable buffer, ``MfccTower.dct``). Rows: 40 (4 x 10 frames) instead of 39. The
  standardisation replaces the [0, 1] scaling (same reason as the flow: no batch dependence).
  Note that c0 (the band average) is dropped, so a pure loudness change that is flat over the
  bands is invisible; only the spectral shape's changes reach the network.
* Visual network (``FlowTower``): as the paper, two 3x3x3 Conv3d ('valid', stride 1), max-pool
  (2, 2, 2) then (1, 2, 2), BatchNorm at the 2nd conv, 3D spatial dropout (``nn.Dropout3d``,
  whole feature maps) after each pooling, ReLU everywhere, flatten -> FC -> ReLU. The paper's
  "pooling stride 1x1x1" contradicts "to reduce the network parameters"; we use stride =
  pool size (the Keras default). Filters 64/32 -> 32/16 (``small``), FC 1024 -> 64.
  (10, 32, 32) -> conv (8, 30, 30) -> pool (4, 15, 15) -> conv (2, 13, 13) -> pool (2, 6, 6).
* Audio network (``MfccTower``): as the paper, two 2x2 Conv2d ('valid', stride 1) over
  (rows x 12 MFCC), max-pool 2x2 then 1x2 (time x cepstrum), BatchNorm at the 2nd conv, ReLU,
  flatten -> FC -> ReLU. Filters 128/64 -> 64/32, FC 1024 -> 64. No dropout (the paper has
  none in this network). (40, 12) -> (39, 11) -> (19, 5) -> (18, 4) -> (18, 2).
* C3 fusion: [VF, AF] -> FC -> ReLU -> FC -> 1 logit. The paper's 2-way softmax with cross
  entropy is the same model as one logit (the difference of the two softmax inputs) with
  binary cross-entropy; train with ``BCEWithLogitsLoss`` (target 1 = in sync).
* Similarity skip (``similarity_dim > 0``, the default; not in the paper): the logit gets
  ``scale * cos(P_v VF, P_a AF)`` added, two linear projections of the tower features and a
  learned scale. A concatenation MLP has to discover a multiplicative audio-visual
  interaction from second-order gradients; on our ~6 minutes of video it never did (BCE at
  ln 2 and the multi-way loss at ln 8 for 800 steps, validation at chance). The cosine hands
  the loss a first-order path to the towers, as in SyncNet; the MLP stays and can add to it.
  ``similarity_dim=0`` is the paper's C3. WLOS has no such term (its towers come from C3).
* WLOS fusion: [VF, AF] -> FC -> ReLU -> FC -> ReLU -> FC -> 1, linear output (3 FC layers).
  ``WLOS.init_from_c3`` copies both towers from a trained C3 (the paper's fine-tuning).
* Sizes: the paper trained 2048-d features and 1024-d FCs on ~250k pairs (4 GRID speakers x
  1000 videos). We have ~6 minutes of training video, so ``small()`` has a few hundred
  thousand parameters (64-d features, 64-unit fusion) and a little dropout in the fusion,
  which the paper does not have.

Offset sign: WLOS predicts the offset d of the audio relative to the video, positive = audio
LATE. The audio given with a video window starting at frame t is what a file whose audio is
late by d frames holds at that time, i.e. the original audio of frames [t - d, t - d + 10).
The paper's range is -(n - 1) <= d <= n - 1 = +-9 for n = 10 frames (``max_offset``).

The modules hold pure tensor code: no I/O, no device choice (the caller moves them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from avsync.models.syncnet import N_MELS, ROWS_PER_FRAME, PresetMixin

FRAMES: int = 10
"""Video frames per window (0.4 s at 25 fps), the paper's n."""

AUDIO_ROWS: int = FRAMES * ROWS_PER_FRAME
"""Log-mel rows per window (40 rows of 10 ms)."""

N_MFCC: int = 12
"""Cepstral coefficients kept (1..12; c0 is dropped as in the paper)."""

FLOW_SIZE: int = 32
"""Side of the square vertical-flow maps (the paper's 32x32 lip area)."""

MAX_OFFSET: int = FRAMES - 1
"""Largest |d| a 10-frame window can see (the paper's -9..+9)."""


def dct_matrix(n: int) -> torch.Tensor:
    """(n, n) float32 orthonormal DCT-II: row k is the k-th basis vector, ``D @ D.T = I``.

    ``x @ D.T`` gives the DCT-II coefficients of the rows of x (scipy's ``dct(x, norm="ortho")``).
    """
    i = torch.arange(n, dtype=torch.float64)
    d = torch.cos(math.pi / n * (i[None, :] + 0.5) * i[:, None]) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d.float()


class FlowTower(nn.Module):
    """Visual network: (B, frames, size, size) normalised vertical flow -> (B, feature_dim) >= 0.

    Conv3d 3x3x3 -> ReLU -> MaxPool (2, 2, 2) -> Dropout3d -> Conv3d 3x3x3 -> BatchNorm -> ReLU ->
    MaxPool (1, 2, 2) -> Dropout3d -> flatten -> Linear -> ReLU (convs 'valid', stride 1).
    """

    def __init__(self, channels: tuple[int, int], feature_dim: int, frames: int = FRAMES,
                 size: int = FLOW_SIZE, dropout: float = 0.0) -> None:
        super().__init__()
        c1, c2 = channels
        self.frames, self.size = frames, size
        self.convs = nn.Sequential(
            nn.Conv3d(1, c1, 3), nn.ReLU(inplace=True), nn.MaxPool3d((2, 2, 2)), nn.Dropout3d(dropout),
            nn.Conv3d(c1, c2, 3, bias=False), nn.BatchNorm3d(c2), nn.ReLU(inplace=True),
            nn.MaxPool3d((1, 2, 2)), nn.Dropout3d(dropout))
        self.convs.to(memory_format=torch.channels_last_3d)  # kept by load_state_dict (copy_)
        # 'valid' 3x3x3 convs remove 2 per axis; the pools divide (floor).
        t = (frames - 2) // 2 - 2
        s = ((size - 2) // 2 - 2) // 2
        if t < 1 or s < 1:
            raise ValueError(f"flow input ({frames}, {size}, {size}) too small for the visual network")
        self.out_shape = (c2, t, s, s)
        self.fc = nn.Linear(c2 * t * s * s, feature_dim)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """video: (B, frames, size, size) float. Returns (B, feature_dim).

        The 3D convolutions and pools run channels-last, weights and input (on this CPU, one
        thread: 10 windows 18.2 -> 3.8 ms, 200 windows 428 -> 175 ms; outputs equal to ~6e-6,
        float rounding: docs/BENCHMARKS.md "Speed v4"); the map goes back to (c2, t, s, s)
        order before the linear layer. Checkpoints are saved contiguous (train.checkpoint)."""
        x = video.unsqueeze(1).contiguous(memory_format=torch.channels_last_3d)
        x = self.convs(x)  # (B, c2, t, s, s), channels-last in memory
        return torch.relu(self.fc(x.contiguous().flatten(1)))


class MfccTower(nn.Module):
    """Audio network: (B, rows, n_mels) standardised log-mel -> (B, feature_dim) >= 0.

    The MFCCs are computed first, ``mfcc = logmel @ dct.T`` with ``dct`` rows 1..n_mfcc of the
    orthonormal DCT-II (a fixed buffer, not trained). Then Conv2d 2x2 -> ReLU -> MaxPool 2x2 ->
    Conv2d 2x2 -> BatchNorm -> ReLU -> MaxPool (1, 2) -> flatten -> Linear -> ReLU over the
    (rows x n_mfcc) map (convs 'valid', stride 1).
    """

    dct: torch.Tensor

    def __init__(self, channels: tuple[int, int], feature_dim: int, rows: int = AUDIO_ROWS,
                 n_mels: int = N_MELS, n_mfcc: int = N_MFCC) -> None:
        super().__init__()
        if not 1 <= n_mfcc < n_mels:
            raise ValueError(f"n_mfcc must be in 1..{n_mels - 1}, got {n_mfcc}")
        c1, c2 = channels
        self.rows, self.n_mels = rows, n_mels
        # Fixed, derived from the config: not trained and not saved in the state dict.
        self.register_buffer("dct", dct_matrix(n_mels)[1:n_mfcc + 1].contiguous(), persistent=False)
        self.convs = nn.Sequential(
            nn.Conv2d(1, c1, 2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 2, bias=False), nn.BatchNorm2d(c2), nn.ReLU(inplace=True),
            nn.MaxPool2d((1, 2)))
        # 'valid' 2x2 convs remove 1 per axis; the pools divide (floor).
        r = (rows - 1) // 2 - 1
        m = ((n_mfcc - 1) // 2 - 1) // 2
        if r < 1 or m < 1:
            raise ValueError(f"audio input ({rows} rows, {n_mfcc} MFCC) too small for the audio network")
        self.out_shape = (c2, r, m)
        self.fc = nn.Linear(c2 * r * m, feature_dim)

    def mfcc(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, rows, n_mels) log-mel -> (B, rows, n_mfcc) cepstral coefficients 1..n_mfcc."""
        return audio @ self.dct.T

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """audio: (B, rows, n_mels) float. Returns (B, feature_dim)."""
        x = self.convs(self.mfcc(audio).unsqueeze(1))  # (B, c2, r, m)
        return torch.relu(self.fc(x.flatten(1)))


@dataclass(frozen=True)
class WLOSConfig(PresetMixin):
    """Sizes of C3 / WLOS. ``debug()`` is tiny (tests), ``small()`` fits ~6 minutes of video.

    frames / audio_rows / n_mels / flow_size: the input window, (B, frames, flow_size,
    flow_size) flow and (B, audio_rows, n_mels) log-mel. n_mfcc: cepstral coefficients kept.
    flow_channels / mfcc_channels: filters of the two convs of each tower (paper: 64/32 and
    128/64). feature_dim: size of each tower's feature (paper: 1024). fusion_hidden: width of
    the hidden fusion FC layers (paper: 1024). dropout: 3D spatial dropout rate in the flow
    tower (paper: 0.5). fusion_dropout: dropout after each hidden fusion layer (not in the
    paper). max_offset: |d| range of ``WLOS.predict`` (frames - 1 in the paper).
    similarity_dim: C3 only, size of the projections of the similarity skip (0: none, the
    paper's C3; see the module docstring).
    """

    frames: int = FRAMES
    audio_rows: int = AUDIO_ROWS
    n_mels: int = N_MELS
    n_mfcc: int = N_MFCC
    flow_size: int = FLOW_SIZE
    flow_channels: tuple[int, int] = (32, 16)
    mfcc_channels: tuple[int, int] = (64, 32)
    feature_dim: int = 64
    fusion_hidden: int = 64
    dropout: float = 0.5
    fusion_dropout: float = 0.1
    max_offset: int = MAX_OFFSET
    similarity_dim: int = 32

    def __post_init__(self) -> None:
        if len(self.flow_channels) != 2 or len(self.mfcc_channels) != 2:
            raise ValueError("flow_channels and mfcc_channels need exactly 2 entries (2 convs each)")
        if self.max_offset < 0:
            raise ValueError(f"max_offset must be >= 0, got {self.max_offset}")
        if self.similarity_dim < 0:
            raise ValueError(f"similarity_dim must be >= 0, got {self.similarity_dim}")

    @classmethod
    def debug(cls) -> WLOSConfig:
        return cls(flow_channels=(4, 8), mfcc_channels=(8, 8), feature_dim=16, fusion_hidden=16,
                   dropout=0.0, fusion_dropout=0.0, similarity_dim=8)

    @classmethod
    def small(cls) -> WLOSConfig:
        return cls()


_TOWER_FIELDS = ("frames", "audio_rows", "n_mels", "n_mfcc", "flow_size", "flow_channels",
                 "mfcc_channels", "feature_dim")


class _TwoTowers(nn.Module):
    """The towers shared by C3 and WLOS; ``features`` -> [VF, AF] (B, 2 * feature_dim)."""

    visual_kind: ClassVar[str] = "flow"

    def __init__(self, config: WLOSConfig | None) -> None:
        super().__init__()
        self.config = config = config or WLOSConfig.small()
        self.video = FlowTower(config.flow_channels, config.feature_dim, config.frames,
                               config.flow_size, config.dropout)
        self.audio = MfccTower(config.mfcc_channels, config.feature_dim, config.audio_rows,
                               config.n_mels, config.n_mfcc)

    def _check(self, video: torch.Tensor, audio: torch.Tensor, paired: bool = True) -> None:
        c = self.config
        if video.dim() != 4 or tuple(video.shape[1:]) != (c.frames, c.flow_size, c.flow_size):
            raise ValueError(f"video must be (B, {c.frames}, {c.flow_size}, {c.flow_size}), "
                             f"got {tuple(video.shape)}")
        if audio.dim() != 3 or tuple(audio.shape[1:]) != (c.audio_rows, c.n_mels):
            raise ValueError(f"audio must be (B, {c.audio_rows}, {c.n_mels}), got {tuple(audio.shape)}")
        if paired and len(video) != len(audio):
            raise ValueError(f"batch sizes differ: video {len(video)}, audio {len(audio)}")

    def features(self, video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """video (B, frames, 32, 32), audio (B, rows, 40) -> (B, 2 * feature_dim) = [VF, AF]."""
        self._check(video, audio)
        return torch.cat([self.video(video), self.audio(audio)], dim=1)


class SimilaritySkip(nn.Module):
    """``scale * cos(P_v v, P_a a)`` over the last axis: (..., dv), (..., da) -> (...); with
    ``mean_axis``, the cosines are averaged over that axis (e.g. time) first. The scale is
    learned (log-parametrised, starts at 5)."""

    def __init__(self, video_dim: int, audio_dim: int, dim: int, init_scale: float = 5.0) -> None:
        super().__init__()
        self.video = nn.Linear(video_dim, dim)
        self.audio = nn.Linear(audio_dim, dim)
        self.log_scale = nn.Parameter(torch.tensor(math.log(init_scale)))

    def forward(self, v: torch.Tensor, a: torch.Tensor, mean_axis: int | None = None) -> torch.Tensor:
        cos = torch.cosine_similarity(self.video(v), self.audio(a), dim=-1, eps=1e-6)
        if mean_axis is not None:
            cos = cos.mean(mean_axis)
        return self.log_scale.exp() * cos


def _mlp(sizes: list[int], dropout: float) -> nn.Sequential:
    """Linear layers between ``sizes``; ReLU (+ dropout) after all but the last."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU(inplace=True))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class C3(_TwoTowers):
    """Classification correlation CNN: is this flow / audio window pair in sync?

    forward(video (B, frames, 32, 32) float normalised vertical flow, audio (B, rows, 40) float
    standardised log-mel) -> (B,) logit of "in sync" (train with BCEWithLogitsLoss; the
    paper's 2-way softmax is equivalent). Fusion: 2 FC layers, plus the similarity skip
    ``scale * cos(P_v VF, P_a AF)`` when ``config.similarity_dim > 0``.
    """

    output: ClassVar[str] = "pair"

    def __init__(self, config: WLOSConfig | None = None) -> None:
        super().__init__(config)
        c = self.config
        self.fusion = _mlp([2 * c.feature_dim, c.fusion_hidden, 1], c.fusion_dropout)
        self.similarity = (SimilaritySkip(c.feature_dim, c.feature_dim, c.similarity_dim)
                           if c.similarity_dim else None)

    def forward(self, video: torch.Tensor, audio: torch.Tensor,
                candidates: torch.Tensor | None = None) -> torch.Tensor:
        """Returns (B,) sync logits of the pairs (video[i], audio[i]).

        With ``candidates`` (B, K) long indices into ``audio`` (U windows, any U), returns
        (B, K) logits of the pairs (video[i], audio[candidates[i, k]]): each tower runs once
        per window, only the fusion runs per pair (training over many shifts at once).
        """
        if candidates is None:
            self._check(video, audio)
            return self._head(self.video(video), self.audio(audio))
        self._check(video, audio, paired=False)
        return self.pair_head(self.video(video), self.audio(audio), candidates)

    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """(B, frames, 32, 32) -> (B, feature_dim): the flow tower alone (scorers cache it)."""
        return self.video(video)

    def encode_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """(U, rows, 40) -> (U, feature_dim): the MFCC tower alone (scorers cache it)."""
        return self.audio(audio)

    def pair_head(self, vf: torch.Tensor, af: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Tower features vf (B, d), af (U, d) and candidates (B, K) indices into af -> (B, K)
        logits; ``forward(v, a, candidates)`` is ``pair_head(encode_video(v), encode_audio(a),
        candidates)``."""
        return self._head(vf[:, None].expand(-1, candidates.shape[1], -1), af[candidates])

    def _head(self, vf: torch.Tensor, af: torch.Tensor) -> torch.Tensor:
        logit = self.fusion(torch.cat([vf, af], dim=-1)).squeeze(-1)
        if self.similarity is not None:
            logit = logit + self.similarity(vf, af)
        return logit


class WLOS(_TwoTowers):
    """Watch, Listen Once, and Sync: regress the audio offset of one window pair.

    forward(video (B, frames, 32, 32) float normalised vertical flow, audio (B, rows, 40) float
    standardised log-mel) -> (B,) predicted offset d in frames, unclamped (train with MSE or
    Huber). Positive d = audio LATE: ``audio`` is what a file whose audio is late by d frames
    holds at the video window's time. Fusion: 3 FC layers, linear output.
    """

    output: ClassVar[str] = "regression"

    def __init__(self, config: WLOSConfig | None = None) -> None:
        super().__init__(config)
        c = self.config
        self.fusion = _mlp([2 * c.feature_dim, c.fusion_hidden, c.fusion_hidden, 1], c.fusion_dropout)

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Returns (B,) offsets in frames (float, unclamped)."""
        return self.fusion(self.features(video, audio)).squeeze(-1)

    def predict(self, video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """``forward`` clamped to [-max_offset, max_offset] (B,). Set eval mode / no_grad yourself."""
        m = float(self.config.max_offset)
        return self.forward(video, audio).clamp(-m, m)

    def init_from_c3(self, c3: C3) -> None:
        """Copy both towers' weights (and BatchNorm statistics) from a trained C3.

        The fusion network is left as it is (freshly initialised). Raises ValueError when the
        towers' sizes differ.
        """
        if not isinstance(c3, C3):
            raise TypeError(f"expected a C3, got {type(c3).__name__}")
        diff = [f for f in _TOWER_FIELDS if getattr(self.config, f) != getattr(c3.config, f)]
        if diff:
            raise ValueError(f"C3 towers differ from this WLOS's in {', '.join(diff)}")
        with torch.no_grad():
            self.video.load_state_dict(c3.video.state_dict())
            self.audio.load_state_dict(c3.audio.state_dict())
