"""The networks that train and score the lip generator (Chen et al. 2018), pure tensors in/out.

* :class:`LipFlowNet` - a small differentiable optical-flow network (two 64 x 64 frames -> flow
  at 16 x 16), distilled here from OpenCV's Farneback flow on real mouth crops: the paper
  fine-tunes FlowNet, which cannot be downloaded here.
* :class:`CorrelationNets` - the audio-derivative encoder and the optical-flow encoder of the
  audio-visual derivative correlation loss (paper Sec. 3.2, eq. 1).
* :class:`ThreeStreamDiscriminator` - audio, video and optical-flow streams, concatenated and
  read by two convs into one real/fake logit (Sec. 4.2); trained with the mismatch strategy.
* :class:`VideoAutoencoder` - the video autoencoder whose encoder (after six residual blocks)
  gives the perceptual-loss features (Sec. 4.1).
* :class:`LipLandmarkNet` - regresses the 40 lip points from a 64 x 64 crop. The paper runs
  dlib on generated crops for LMD; no face detector finds a face in a mouth-only crop, so LMD
  uses this regressor trained on real crops labelled by the face landmarker (its own error on
  held-out speakers is reported beside LMD).

Video tensors are (B, 3, T, 64, 64) in [-1, 1]; audio (B, rows, n_mels) clip-standardised log-mel.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from avsync.lipgen.model import ResBlock3d, conv2d, conv3d
from avsync.models.syncnet import PresetMixin

FLOW_SIZE: int = 16
"""Side of the flow field the flow network predicts (pixels of a 16 x 16 grid)."""

FLOW_UNIT_PX: float = 1.0
"""Flow values are in pixels of the 64 x 64 crop (Farneback targets are pooled to 16 x 16)."""


@dataclass(frozen=True)
class CriticConfig(PresetMixin):
    """width: base channel count of the critic networks (the landmark network uses twice it);
    corr_dim: feature size of the correlation encoders; n_res: residual blocks of
    the video autoencoder (six in the paper)."""

    width: int = 16
    corr_dim: int = 64
    n_res: int = 6
    n_mels: int = 40
    frames: int = 16
    n_points: int = 40

    @classmethod
    def debug(cls) -> CriticConfig:
        return cls(width=8, corr_dim=16, n_res=1)

    @classmethod
    def small(cls) -> CriticConfig:
        return cls()


def frames_of(video: torch.Tensor) -> torch.Tensor:
    """(B, 3, T, H, W) -> (B*T, 3, H, W)."""
    b, c, t, h, w = video.shape
    return video.transpose(1, 2).reshape(b * t, c, h, w)


class LipFlowNet(nn.Module):
    """Two RGB frames (B, 6, 64, 64) in [-1, 1] -> flow (B, 2, 16, 16) in crop pixels (x, y).

    The pair is average-pooled to 32 x 32 first (mouth motion is a few pixels; this keeps the
    network cheap enough to run on every generated clip during training)."""

    def __init__(self, config: CriticConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        self.net = nn.Sequential(
            nn.AvgPool2d(2),
            conv2d(6, w, 2),
            conv2d(w, w),
            conv2d(w, 2 * w),
            nn.Conv2d(2 * w, 2 * w, 3, 1, 2, dilation=2),
            nn.ReLU(inplace=True),
            nn.Conv2d(2 * w, 2, 3, 1, 1),
        )

    def forward(self, pair: torch.Tensor) -> torch.Tensor:
        return self.net(pair)

    def video_flow(self, video: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, 64, 64) -> flows between consecutive frames (B, 2, T-1, 16, 16)."""
        b, _, t, h, w = video.shape
        pairs = torch.cat([video[:, :, :-1], video[:, :, 1:]], dim=1)  # (B, 6, T-1, H, W)
        flow = self(frames_of(pairs))  # (B*(T-1), 2, 16, 16)
        return flow.reshape(b, t - 1, 2, *flow.shape[-2:]).transpose(1, 2)


class _AudioStream(nn.Module):
    """(B, rows, n_mels) -> (B, C, steps): four convs (the paper's audio stream), time pooled
    to ``steps``."""

    def __init__(self, c_in: int, width: int, out: int, steps: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            conv2d(c_in, width, (1, 2)),
            conv2d(width, width, (2, 2)),
            conv2d(width, 2 * width, (1, 2)),
            conv2d(2 * width, out, (2, 2)),
        )
        self.steps = steps

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        x = self.convs(audio.unsqueeze(1))
        return F.adaptive_avg_pool2d(x, (self.steps, 1)).squeeze(-1)


class CorrelationNets(nn.Module):
    """Audio-derivative encoder and flow encoder of the correlation loss.

    ``audio_features(d_audio)``: (B, rows - 4, n_mels) frame-to-frame audio derivatives (the
    log-mel minus itself 4 rows = one frame earlier) -> (B, D, T-1);
    ``flow_features(flow)``: (B, 2, T-1, 16, 16) -> (B, D, T-1). Both keep a wide temporal
    receptive field (3 + 3 steps) for the lip-before-sound delay the paper discusses.
    """

    def __init__(self, config: CriticConfig) -> None:
        super().__init__()
        self.config = config
        w, d, t = config.width, config.corr_dim, config.frames - 1
        self.audio = nn.Sequential(_AudioStream(1, w, d, t))
        self.audio_time = nn.Conv1d(d, d, 5, 1, 2)
        self.flow = nn.Sequential(
            conv3d(2, w, (1, 2, 2)), conv3d(w, 2 * w, (1, 2, 2)), conv3d(2 * w, d, (1, 2, 2))
        )
        self.flow_time = nn.Conv1d(d, d, 5, 1, 2)

    def audio_features(self, d_audio: torch.Tensor) -> torch.Tensor:
        return self.audio_time(self.audio(d_audio))

    def flow_features(self, flow: torch.Tensor) -> torch.Tensor:
        x = self.flow(flow).mean(dim=(-2, -1))  # (B, D, T-1)
        return self.flow_time(x)


def audio_derivative(audio: torch.Tensor, rows_per_frame: int = 4) -> torch.Tensor:
    """(B, rows, n_mels) -> (B, rows - rows_per_frame, n_mels): change over one video frame."""
    return audio[:, rows_per_frame:] - audio[:, :-rows_per_frame]


def correlation_loss(
    nets: CorrelationNets, audio: torch.Tensor, flow: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """Paper eq. 1: 1 - cos(phi_a(d audio), phi_f(flow)), averaged over the batch.

    audio: (B, rows, n_mels); flow: (B, 2, T-1, 16, 16). Returns a scalar in [0, 2].
    """
    fa = nets.audio_features(audio_derivative(audio)).flatten(1)
    ff = nets.flow_features(flow).flatten(1)
    cos = (fa * ff).sum(1) / (fa.norm(dim=1) * ff.norm(dim=1) + eps)
    return (1 - cos).mean()


class ThreeStreamDiscriminator(nn.Module):
    """video (B, 3, T, 64, 64), its flow (B, 2, T-1, 16, 16) and audio (B, rows, n_mels) ->
    (B,) real/fake logits (real = matching real video and audio)."""

    def __init__(self, config: CriticConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        self.audio = _AudioStream(1, w, 2 * w, 1)
        self.audio_fc = nn.Linear(2 * w, 2 * w)
        self.video = nn.Sequential(
            conv3d(3, w, (1, 2, 2)), conv3d(w, w, 2), conv3d(w, 2 * w, 2), conv3d(2 * w, 2 * w, (1, 2, 2))
        )  # (4, 4, 4)
        self.flow = nn.Sequential(
            conv3d(2, w, 1), conv3d(w, w, 2), conv3d(w, 2 * w, 2), conv3d(2 * w, 2 * w, (1, 1, 1))
        )  # (4, 4, 4) from (15, 16, 16)
        self.head = nn.Sequential(conv3d(6 * w, 2 * w), nn.Conv3d(2 * w, 1, (4, 4, 4)))

    def forward(self, video: torch.Tensor, flow: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        v = self.video(video)
        f = F.adaptive_avg_pool3d(self.flow(flow), v.shape[-3:])
        a = self.audio_fc(self.audio(audio).squeeze(-1))[:, :, None, None, None].expand(-1, -1, *v.shape[-3:])
        logit = self.head(torch.cat([v, f, a], dim=1))
        return logit.flatten(1).mean(1)


class VideoAutoencoder(nn.Module):
    """(B, 3, T, 64, 64) -> the same; ``encode`` gives the perceptual features (B, 2w, T/2, 8, 8)."""

    def __init__(self, config: CriticConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        self.encoder = nn.Sequential(
            conv3d(3, w, (1, 2, 2)),
            conv3d(w, 2 * w, (1, 2, 2)),
            conv3d(2 * w, 2 * w, 2),
            *[ResBlock3d(2 * w) for _ in range(config.n_res)],
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose3d(2 * w, 2 * w, 4, 2, 1),
            nn.ReLU(inplace=True),
            nn.ConvTranspose3d(2 * w, w, (1, 4, 4), (1, 2, 2), (0, 1, 1)),
            nn.ReLU(inplace=True),
            nn.ConvTranspose3d(w, w, (1, 4, 4), (1, 2, 2), (0, 1, 1)),
            nn.ReLU(inplace=True),
            nn.Conv3d(w, 3, 3, 1, 1),
            nn.Tanh(),
        )

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        return self.encoder(video)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(video))


def perceptual_loss(autoencoder: VideoAutoencoder, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Paper eq. 3: mean squared distance of the (frozen) encoder features of fake and real."""
    with torch.no_grad():
        target = autoencoder.encode(real)
    return F.mse_loss(autoencoder.encode(fake), target)


class LipLandmarkNet(nn.Module):
    """(B, 3, 64, 64) in [-1, 1] -> (B, n_points, 2) lip points in crop pixels."""

    def __init__(self, config: CriticConfig) -> None:
        super().__init__()
        self.config = config
        w = 2 * config.width
        self.convs = nn.Sequential(
            conv2d(3, w, 2), conv2d(w, 2 * w, 2), conv2d(2 * w, 2 * w, 2), conv2d(2 * w, 4 * w, 2)
        )  # 4 x 4
        self.fc = nn.Linear(4 * w * 16, config.n_points * 2)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        out = self.fc(self.convs(image).flatten(1))
        return 32.0 + 16.0 * out.reshape(-1, self.config.n_points, 2)  # around the crop centre
