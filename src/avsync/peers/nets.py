"""The two published sync networks, rebuilt so that their released state dicts load by key name.

``SyncNetV2``: syncnet_python's ``SyncNetModel.S`` (Chung & Zisserman 2016, the "v2" weights of
syncnet_v2.model). Lip stream: (B, 3, 5, 224, 224) BGR pixel values 0..255 (not normalised),
five consecutive 25 fps face crops -> (B, 1024). Audio stream: (B, 1, 13, 20) MFCCs (0.2 s at
100 Hz) -> (B, 1024).

``Wav2LipExpert``: Wav2Lip's ``SyncNet_color`` (the lip-sync expert of lipsync_expert.pth).
Face: (B, 15, 48, 96) the lower halves of five 96x96 BGR crops in 0..1 stacked on channels
(frame-major) -> (B, 512) unit vectors. Audio: (B, 1, 80, 16) log-mel (0.2 s at 80 Hz) -> (B, 512)
unit vectors; the sync probability is their cosine similarity.

Written from the published architectures; layer positions match the originals so that
``state_dict`` keys (``netcnnlip.0.weight``, ``face_encoder.3.conv_block.1.running_mean``, ...) do.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

SYNCNET_FEATURE_DIM: int = 1024
EXPERT_FEATURE_DIM: int = 512


def _stack(spec: list[tuple], conv: type, bn: type, pool: type) -> nn.Sequential:
    """Layers from a spec: ("c", cin, cout, kernel, stride, pad), ("r",) ReLU, ("p", kernel, stride, pad)."""
    layers: list[nn.Module] = []
    for item in spec:
        if item[0] == "c":
            _, cin, cout, k, s, p = item
            layers += [conv(cin, cout, kernel_size=k, stride=s, padding=p), bn(cout)]
        elif item[0] == "r":
            layers.append(nn.ReLU())
        else:
            _, k, s, p = item
            layers.append(pool(kernel_size=k, stride=s, padding=p))
    return nn.Sequential(*layers)


def _head(dim_in: int, dim_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim_in, dim_in), nn.BatchNorm1d(dim_in), nn.ReLU(),
                         nn.Linear(dim_in, dim_out))


_AUDIO_SPEC = [
    ("c", 1, 64, 3, 1, 1), ("r",), ("p", 1, 1, 0),
    ("c", 64, 192, 3, 1, 1), ("r",), ("p", 3, (1, 2), 0),
    ("c", 192, 384, 3, 1, 1), ("r",),
    ("c", 384, 256, 3, 1, 1), ("r",),
    ("c", 256, 256, 3, 1, 1), ("r",), ("p", 3, 2, 0),
    ("c", 256, 512, (5, 4), 1, 0), ("r",),
]

_LIP_SPEC = [
    ("c", 3, 96, (5, 7, 7), (1, 2, 2), 0), ("r",), ("p", (1, 3, 3), (1, 2, 2), 0),
    ("c", 96, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1)), ("r",), ("p", (1, 3, 3), (1, 2, 2), (0, 1, 1)),
    ("c", 256, 256, (1, 3, 3), 1, (0, 1, 1)), ("r",),
    ("c", 256, 256, (1, 3, 3), 1, (0, 1, 1)), ("r",),
    ("c", 256, 256, (1, 3, 3), 1, (0, 1, 1)), ("r",), ("p", (1, 3, 3), (1, 2, 2), 0),
    ("c", 256, 512, (1, 6, 6), 1, 0), ("r",),
]


class SyncNetV2(nn.Module):
    """syncnet_python's SyncNet (state-dict compatible with syncnet_v2.model)."""

    def __init__(self) -> None:
        super().__init__()
        self.netcnnaud = _stack(_AUDIO_SPEC, nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d)
        self.netfcaud = _head(512, SYNCNET_FEATURE_DIM)
        self.netfclip = _head(512, SYNCNET_FEATURE_DIM)
        self.netcnnlip = _stack(_LIP_SPEC, nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d)

    def forward_aud(self, mfcc: torch.Tensor) -> torch.Tensor:
        """(B, 1, 13, 20) MFCCs -> (B, 1024)."""
        return self.netfcaud(self.netcnnaud(mfcc).flatten(1))

    def forward_lip(self, clips: torch.Tensor) -> torch.Tensor:
        """(B, 3, 5, 224, 224) BGR 0..255 -> (B, 1024)."""
        return self.netfclip(self.netcnnlip(clips).flatten(1))


class _ConvBN(nn.Module):
    """Conv2d + BatchNorm (+ identity) + ReLU, the block of Wav2Lip's models (key ``conv_block``)."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple, stride: int | tuple, pad: int,
                 residual: bool = False) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, pad), nn.BatchNorm2d(cout))
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_block(x)
        return F.relu(y + x if self.residual else y)


def _blocks(spec: list[tuple]) -> nn.Sequential:
    """("d", cin, cout, kernel, stride, pad) a down/projecting block, ("R", ch, n) n residual 3x3 blocks."""
    layers: list[nn.Module] = []
    for item in spec:
        if item[0] == "d":
            layers.append(_ConvBN(*item[1:]))
        else:
            layers += [_ConvBN(item[1], item[1], 3, 1, 1, residual=True) for _ in range(item[2])]
    return nn.Sequential(*layers)


_FACE_BLOCKS = [
    ("d", 15, 32, 7, 1, 3),
    ("d", 32, 64, 5, (1, 2), 1), ("R", 64, 2),
    ("d", 64, 128, 3, 2, 1), ("R", 128, 3),
    ("d", 128, 256, 3, 2, 1), ("R", 256, 2),
    ("d", 256, 512, 3, 2, 1), ("R", 512, 2),
    ("d", 512, 512, 3, 2, 1), ("d", 512, 512, 3, 1, 0), ("d", 512, 512, 1, 1, 0),
]

_AUDIO_BLOCKS = [
    ("d", 1, 32, 3, 1, 1), ("R", 32, 2),
    ("d", 32, 64, 3, (3, 1), 1), ("R", 64, 2),
    ("d", 64, 128, 3, 3, 1), ("R", 128, 2),
    ("d", 128, 256, 3, (3, 2), 1), ("R", 256, 2),
    ("d", 256, 512, 3, 1, 0), ("d", 512, 512, 1, 1, 0),
]


class Wav2LipExpert(nn.Module):
    """Wav2Lip's lip-sync expert (state-dict compatible with lipsync_expert.pth)."""

    def __init__(self) -> None:
        super().__init__()
        self.face_encoder = _blocks(_FACE_BLOCKS)
        self.audio_encoder = _blocks(_AUDIO_BLOCKS)

    def embed_face(self, faces: torch.Tensor) -> torch.Tensor:
        """(B, 15, 48, 96) -> (B, 512) unit vectors."""
        return F.normalize(self.face_encoder(faces).flatten(1), p=2, dim=1)

    def embed_audio(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, 1, 80, 16) -> (B, 512) unit vectors."""
        return F.normalize(self.audio_encoder(mel).flatten(1), p=2, dim=1)
