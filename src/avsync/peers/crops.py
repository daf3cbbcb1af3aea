"""Face crops framed as the reference pipelines frame them, from avsync's face tracks.

Frame rate: both models were trained at 25 fps. A track is resampled to a 25 fps grid (grid frame
k at ``t0 + k / 25``, t0 = the track's first frame time) by taking the source frame nearest in
time, as ``ffmpeg -r 25`` does in syncnet_python's run_pipeline.py; a 25 fps track maps to itself.

SyncNet framing (run_pipeline.py ``crop_video``): per frame half-size s = max(w, h) / 2 and the box
centre, each median-filtered over 13 frames (scipy's zero-padded medfilt, edge quirk included);
crop rows [cy - s, cy + s (1 + 2 cs)) and columns [cx - s (1 + cs), cx + s (1 + cs)) with crop
scale cs = 0.4 (a square of side 2 s (1 + cs) reaching lower than the box), grey 110 outside the
image, resized to 224x224.

Wav2Lip framing (preprocess.py): the detector box itself (clipped at 0, truncated to ints),
resized to 96x96; the expert sees its lower half.

Boxes: the references use S3FD boxes. ``s3fd_like_box`` maps avsync's face-landmarker box (the
box around the 478 face-mesh points, in the analysed image) to that framing. The mapping is the
identity (centre and size kept) until it is measured against S3FD with real weights
(benchmarks/peers_framing.py needs the user's sfd_face.pth; docs/BENCHMARKS.md).
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.signal import medfilt

from avsync.peers.evaluate import PEER_FPS

SYNCNET_CROP_PX: int = 224
SYNCNET_CROP_SCALE: float = 0.4
SYNCNET_SMOOTH_FRAMES: int = 13
PAD_VALUE: int = 110
EXPERT_CROP_PX: int = 96
LANDMARK_TO_S3FD_SCALE: float = 1.0
"""Side of the S3FD-like box / side of the landmarker box (identity: not measured, see above)."""
LANDMARK_TO_S3FD_DY: float = 0.0
"""Vertical centre shift, in landmarker-box heights (identity: not measured)."""


def resample_indices(times_s: np.ndarray, fps: float = PEER_FPS) -> np.ndarray:
    """(K,) positions into ``times_s`` (increasing frame times, s) of the frames nearest to a
    ``fps`` grid starting at ``times_s[0]`` and ending at or before ``times_s[-1]``."""
    t = np.asarray(times_s, np.float64)
    n = int(np.floor((t[-1] - t[0]) * fps + 1e-6)) + 1
    grid = t[0] + np.arange(n) / fps
    right = np.clip(np.searchsorted(t, grid), 1, len(t) - 1)
    left = right - 1
    nearer_left = np.abs(grid - t[left]) <= np.abs(t[right] - grid)
    return np.where(nearer_left, left, right) if len(t) > 1 else np.zeros(n, int)


def s3fd_like_box(box: np.ndarray) -> np.ndarray:
    """(..., 4) landmarker boxes (x0, y0, x1, y1) -> S3FD-framed boxes (see the module docstring)."""
    b = np.asarray(box, np.float64)
    cx, cy = (b[..., 0] + b[..., 2]) / 2, (b[..., 1] + b[..., 3]) / 2
    w, h = (b[..., 2] - b[..., 0]) * LANDMARK_TO_S3FD_SCALE, (b[..., 3] - b[..., 1]) * LANDMARK_TO_S3FD_SCALE
    cy = cy + LANDMARK_TO_S3FD_DY * (b[..., 3] - b[..., 1])
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def syncnet_framing(boxes: np.ndarray) -> np.ndarray:
    """(K, 4) per-frame boxes -> (K, 3) smoothed (cx, cy, s) as crop_video computes them."""
    b = np.asarray(boxes, np.float64)
    s = np.maximum(b[:, 3] - b[:, 1], b[:, 2] - b[:, 0]) / 2
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    k = SYNCNET_SMOOTH_FRAMES
    return np.stack([medfilt(cx, k), medfilt(cy, k), medfilt(s, k)], 1)


def _padded_crop(image: np.ndarray, y0: int, y1: int, x0: int, x1: int, fill: int) -> np.ndarray:
    """image[y0:y1, x0:x1] where pixels outside the image read ``fill``."""
    h, w = image.shape[:2]
    out = np.full((max(0, y1 - y0), max(0, x1 - x0), image.shape[2]), fill, image.dtype)
    sy0, sy1, sx0, sx1 = max(y0, 0), min(y1, h), max(x0, 0), min(x1, w)
    if sy1 > sy0 and sx1 > sx0:
        out[sy0 - y0: sy1 - y0, sx0 - x0: sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return out


def syncnet_crop(image_bgr: np.ndarray, cx: float, cy: float, s: float,
                 crop_scale: float = SYNCNET_CROP_SCALE) -> np.ndarray:
    """(224, 224, 3) crop of one frame (pixel box in ``image_bgr`` coordinates), as crop_video."""
    pad = int(s * (1 + 2 * crop_scale))  # crop_video pads the frame by this, then truncates
    my, mx = cy + pad, cx + pad
    rows = int(my - s) - pad, int(my + s * (1 + 2 * crop_scale)) - pad
    cols = int(mx - s * (1 + crop_scale)) - pad, int(mx + s * (1 + crop_scale)) - pad
    face = _padded_crop(image_bgr, rows[0], rows[1], cols[0], cols[1], PAD_VALUE)
    if face.size == 0:
        return np.full((SYNCNET_CROP_PX, SYNCNET_CROP_PX, 3), PAD_VALUE, np.uint8)
    return cv2.resize(face, (SYNCNET_CROP_PX, SYNCNET_CROP_PX))


def expert_crop(image_bgr: np.ndarray, box: np.ndarray) -> np.ndarray:
    """(96, 96, 3) crop of the box (x0, y0, x1, y1) as Wav2Lip's preprocess.py cuts it."""
    x0, y0, x1, y1 = (int(v) for v in np.clip(np.asarray(box, np.float64), 0, None))
    face = image_bgr[y0:y1, x0:x1]
    if face.size == 0:
        return np.zeros((EXPERT_CROP_PX, EXPERT_CROP_PX, 3), np.uint8)
    return cv2.resize(face, (EXPERT_CROP_PX, EXPERT_CROP_PX))
