"""S3FD face detector (Zhang et al. 2017) as syncnet_python runs it, for exact reproduction of its crops.

``S3FDNet``: VGG-16 trunk with L2-normalised conv3_3/4_3/5_3, fc6/7 as convs, two extra stages,
and six 4-coordinate box / 2-class heads (conv3_3's with max-out background); state-dict compatible
with syncnet_python's sfd_face.pth. ``detect_faces`` reproduces syncnet_python's
``S3FD.detect_faces``: RGB image scaled by ``scale`` (0.25 in run_pipeline.py), mean-subtracted,
anchors of 16..512 px on strides 4..128, SSD box decoding (variances 0.1, 0.2), per-class NMS at IoU
0.3 over scores > 0.05 (the best 750 kept), then boxes scoring > ``conf_th`` (0.9 in run_pipeline)
merged by NMS at IoU 0.1.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

RGB_MEAN = np.array([123.0, 117.0, 104.0], np.float32)
ANCHOR_SIZES_PX = (16, 32, 64, 128, 256, 512)
ANCHOR_STRIDES_PX = (4, 8, 16, 32, 64, 128)
VARIANCES = (0.1, 0.2)
CLASS_SCORE_MIN = 0.05
CLASS_NMS_IOU = 0.3
CLASS_NMS_TOP_K = 5000
KEEP_TOP_K = 750
MERGE_NMS_IOU = 0.1
PIPELINE_SCALE = 0.25
PIPELINE_CONF_TH = 0.9


class _L2Norm(nn.Module):
    def __init__(self, channels: int, scale: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight[None, :, None, None] * x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)


def _vgg() -> nn.ModuleList:
    """VGG-16 conv layers with their ReLUs and pools as separate entries (indices as in sfd_face.pth)."""
    layers: list[nn.Module] = []
    cin = 3
    for stage, (cout, n) in enumerate(((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))):
        for _ in range(n):
            layers += [nn.Conv2d(cin, cout, 3, 1, padding=1), nn.ReLU()]
            cin = cout
        layers.append(nn.MaxPool2d(2, 2, ceil_mode=stage == 2))
    layers += [nn.Conv2d(512, 1024, 3, 1, padding=6, dilation=6), nn.ReLU(),
               nn.Conv2d(1024, 1024, 1, 1), nn.ReLU()]
    return nn.ModuleList(layers)


_SOURCE_CHANNELS = (256, 512, 512, 1024, 512, 256)
_TAPS = (16, 23, 30)  # after conv3_3, conv4_3, conv5_3 (+ ReLU)


class S3FDNet(nn.Module):
    """S3FD network; ``forward`` returns raw (loc (B, P, 4), scores (B, P)) over all anchors."""

    def __init__(self) -> None:
        super().__init__()
        self.vgg = _vgg()
        self.L2Norm3_3 = _L2Norm(256, 10)
        self.L2Norm4_3 = _L2Norm(512, 8)
        self.L2Norm5_3 = _L2Norm(512, 5)
        self.extras = nn.ModuleList([nn.Conv2d(1024, 256, 1, 1), nn.Conv2d(256, 512, 3, 2, padding=1),
                                     nn.Conv2d(512, 128, 1, 1), nn.Conv2d(128, 256, 3, 2, padding=1)])
        self.loc = nn.ModuleList([nn.Conv2d(c, 4, 3, 1, padding=1) for c in _SOURCE_CHANNELS])
        self.conf = nn.ModuleList([nn.Conv2d(c, 4 if i == 0 else 2, 3, 1, padding=1)
                                   for i, c in enumerate(_SOURCE_CHANNELS)])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
        """(B, 3, H, W) mean-subtracted RGB -> loc (B, P, 4), face score (B, P), feature-map sizes."""
        sources = []
        norms = (self.L2Norm3_3, self.L2Norm4_3, self.L2Norm5_3)
        start = 0
        for tap, norm in zip(_TAPS, norms, strict=True):
            for layer in self.vgg[start:tap]:
                x = layer(x)
            sources.append(norm(x))
            start = tap
        for layer in self.vgg[start:]:
            x = layer(x)
        sources.append(x)
        for k, layer in enumerate(self.extras):
            x = F.relu(layer(x))
            if k % 2:
                sources.append(x)
        locs, logits, sizes = [], [], []
        for i, src in enumerate(sources):
            c = self.conf[i](src)
            if i == 0:  # max-out background: best of three background maps vs the face map
                c = torch.cat([c[:, :3].max(1, keepdim=True).values, c[:, 3:]], 1)
            sizes.append((src.shape[2], src.shape[3]))
            locs.append(self.loc[i](src).permute(0, 2, 3, 1).reshape(src.shape[0], -1, 4))
            logits.append(c.permute(0, 2, 3, 1).reshape(src.shape[0], -1, 2))
        scores = torch.softmax(torch.cat(logits, 1), dim=-1)[..., 1]
        return torch.cat(locs, 1), scores, sizes


def anchors(image_hw: tuple[int, int], sizes: list[tuple[int, int]]) -> np.ndarray:
    """(P, 4) anchors (cx, cy, w, h) relative to the image, row-major per feature map."""
    h, w = image_hw
    out = []
    for (fh, fw), stride, size in zip(sizes, ANCHOR_STRIDES_PX, ANCHOR_SIZES_PX, strict=True):
        ii, jj = np.meshgrid(np.arange(fh), np.arange(fw), indexing="ij")
        cx = (jj.reshape(-1) + 0.5) / (w / stride)
        cy = (ii.reshape(-1) + 0.5) / (h / stride)
        out.append(np.stack([cx, cy, np.full_like(cx, size / w), np.full_like(cx, size / h)], 1))
    return np.concatenate(out).astype(np.float32)


def decode(loc: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """(P, 4) regressions + anchors -> (P, 4) boxes (x0, y0, x1, y1) relative to the image."""
    centre = prior[:, :2] + loc[:, :2] * VARIANCES[0] * prior[:, 2:]
    size = prior[:, 2:] * np.exp(loc[:, 2:] * VARIANCES[1])
    return np.concatenate([centre - size / 2, centre + size / 2], 1)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_max: float, top_k: int | None = None) -> np.ndarray:
    """Greedy NMS: indices of kept boxes, best score first (IoU on areas (x1-x0)(y1-y0))."""
    order = np.argsort(scores, kind="stable")[::-1]
    if top_k is not None:
        order = order[:top_k]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        lo = np.maximum(boxes[i, :2], boxes[rest, :2])
        hi = np.minimum(boxes[i, 2:4], boxes[rest, 2:4])
        iw, ih = np.maximum(0.0, hi - lo).T
        inter = iw * ih
        order = rest[inter / (area[i] + area[rest] - inter) <= iou_max]
    return np.asarray(keep, dtype=np.int64)


@torch.no_grad()
def detect_faces(net: S3FDNet, image_rgb: np.ndarray, conf_th: float = PIPELINE_CONF_TH,
                 scale: float = PIPELINE_SCALE) -> np.ndarray:
    """(N, 5) face boxes (x0, y0, x1, y1 in pixels of ``image_rgb``, score), best first."""
    h, w = image_rgb.shape[:2]
    small = cv2.resize(image_rgb, dsize=(0, 0), fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    x = torch.from_numpy((small.astype(np.float32) - RGB_MEAN).transpose(2, 0, 1).copy())[None]
    loc, scores, sizes = net(x)
    loc, scores = loc[0].numpy(), scores[0].numpy()
    boxes = decode(loc, anchors(tuple(x.shape[2:]), sizes))
    cand = np.flatnonzero(scores > CLASS_SCORE_MIN)
    kept = cand[nms(boxes[cand], scores[cand], CLASS_NMS_IOU, CLASS_NMS_TOP_K)][:KEEP_TOP_K]
    kept = kept[scores[kept] > conf_th]
    dets = np.concatenate([boxes[kept] * np.array([w, h, w, h], np.float32), scores[kept, None]], 1)
    if len(dets) == 0:
        return np.zeros((0, 5))
    return dets[nms(dets[:, :4].astype(np.float64), dets[:, 4].astype(np.float64), MERGE_NMS_IOU)]
