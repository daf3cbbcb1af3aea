"""Per-frame mouth signals from landmarks, and landmark-aligned mouth crops.

All geometric signals are divided by the inter-ocular distance so they do not depend on the
face's size in the image (identity- and zoom-normalised).
"""

from __future__ import annotations

import cv2
import numpy as np

from avsync.face.landmarks import BLENDSHAPE_NAMES, FaceDetection

# MediaPipe FaceMesh indices.
INNER_LIP = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)
OUTER_LIP = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146)
UPPER_INNER, LOWER_INNER = 13, 14
UPPER_OUTER, LOWER_OUTER = 0, 17
INNER_CORNERS = (78, 308)
OUTER_CORNERS = (61, 291)
EYE_CORNERS = (33, 263)
NOSE_TIP, CHIN = 1, 152

GEOMETRY_NAMES: tuple[str, ...] = ("aperture", "inner_area", "inner_width", "outer_height",
                                   "outer_area", "jaw_drop")
FLOW_NAMES: tuple[str, ...] = ("flow_vy", "flow_mag", "mouth_dark")
SIGNAL_NAMES: tuple[str, ...] = GEOMETRY_NAMES + tuple(BLENDSHAPE_NAMES) + FLOW_NAMES
"""Order of the columns of the per-frame visual signal matrix."""

CROP_W, CROP_H = 64, 40
"""Size of the aligned grey mouth crop used for optical flow (pixels)."""


def _polygon_area(xy: np.ndarray) -> float:
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * float(abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def geometry_signals(landmarks: np.ndarray) -> np.ndarray:
    """Scale-free lip geometry of one face.

    landmarks: (478, 2) pixel coordinates. Returns (len(GEOMETRY_NAMES),) float32.
    """
    p = landmarks
    iod = float(np.linalg.norm(p[EYE_CORNERS[0]] - p[EYE_CORNERS[1]])) + 1e-6
    return np.array([
        np.linalg.norm(p[UPPER_INNER] - p[LOWER_INNER]) / iod,
        _polygon_area(p[list(INNER_LIP)]) / iod**2,
        np.linalg.norm(p[INNER_CORNERS[0]] - p[INNER_CORNERS[1]]) / iod,
        np.linalg.norm(p[UPPER_OUTER] - p[LOWER_OUTER]) / iod,
        _polygon_area(p[list(OUTER_LIP)]) / iod**2,
        np.linalg.norm(p[NOSE_TIP] - p[CHIN]) / iod,
    ], dtype=np.float32)


def mouth_affine(landmarks: np.ndarray, width: int = CROP_W, height: int = CROP_H) -> np.ndarray:
    """2x3 affine that maps the image to a crop with the mouth corners level and centred.

    The mouth (outer corners) spans half the crop width; the crop is centred on the lip centre.
    """
    left, right = landmarks[OUTER_CORNERS[0]], landmarks[OUTER_CORNERS[1]]
    centre = landmarks[list(OUTER_LIP)].mean(axis=0)
    dx, dy = right - left
    angle = np.degrees(np.arctan2(dy, dx))
    scale = (0.5 * width) / max(float(np.hypot(dx, dy)), 1e-3)
    m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), float(angle), scale)
    m[0, 2] += width / 2 - centre[0]
    m[1, 2] += height / 2 - centre[1]
    return m


def mouth_crop(image: np.ndarray, landmarks: np.ndarray, width: int = CROP_W,
               height: int = CROP_H, grey: bool = True) -> np.ndarray:
    """Landmark-aligned mouth crop: (height, width) uint8 grey, or (height, width, 3) RGB."""
    m = mouth_affine(landmarks, width, height)
    src = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if grey else image
    return cv2.warpAffine(src, m, (width, height), flags=cv2.INTER_AREA,
                          borderMode=cv2.BORDER_REPLICATE)


def flow_signals(prev_crop: np.ndarray | None, crop: np.ndarray) -> np.ndarray:
    """Farneback optical flow inside the mouth crop (the QMI/WLOS visual feature).

    Returns (3,) float32: mean vertical flow of the lower half minus the upper half (opening
    speed, pixels/frame of the crop), mean flow magnitude, and mouth-centre darkness.
    """
    h, w = crop.shape
    centre = crop[h // 3: 2 * h // 3, w // 3: 2 * w // 3]
    dark = 1.0 - float(centre.mean()) / 255.0
    if prev_crop is None:
        return np.array([np.nan, np.nan, dark], dtype=np.float32)
    flow = cv2.calcOpticalFlowFarneback(prev_crop, crop, None, 0.5, 2, 9, 2, 5, 1.1, 0)
    vy = flow[..., 1]
    opening = float(vy[h // 2:].mean() - vy[: h // 2].mean())
    mag = float(np.sqrt((flow**2).sum(-1)).mean())
    return np.array([opening, mag, dark], dtype=np.float32)


def frame_signals(face: FaceDetection, flow: np.ndarray) -> np.ndarray:
    """All per-frame visual signals of one face, in SIGNAL_NAMES order."""
    return np.concatenate([geometry_signals(face.landmarks), face.blendshapes, flow]).astype(
        np.float32)
