"""Per-frame mouth signals from landmarks, and landmark-aligned mouth crops.

All geometric signals are divided by the inter-ocular distance so they do not depend on the
face's size in the image (identity- and zoom-normalised).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from avsync.face.landmarks import BLENDSHAPE_NAMES, FaceDetection


@dataclass(frozen=True)
class LandmarkScheme:
    """Indices of the lip, eye, nose and chin points in one landmark layout."""

    name: str
    inner_lip: tuple[int, ...]
    outer_lip: tuple[int, ...]
    upper_inner: int
    lower_inner: int
    upper_outer: int
    lower_outer: int
    inner_corners: tuple[int, int]
    outer_corners: tuple[int, int]
    eye_corners: tuple[int, int]
    nose_tip: int
    chin: int


MEDIAPIPE_478 = LandmarkScheme(
    "mediapipe478",
    inner_lip=(78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178,
               88, 95),
    outer_lip=(61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181,
               91, 146),
    upper_inner=13, lower_inner=14, upper_outer=0, lower_outer=17, inner_corners=(78, 308),
    outer_corners=(61, 291), eye_corners=(33, 263), nose_tip=1, chin=152)

IBUG_68 = LandmarkScheme(
    "ibug68",  # dlib's 68-point layout, as in the papers (0-based)
    inner_lip=tuple(range(60, 68)), outer_lip=tuple(range(48, 60)),
    upper_inner=62, lower_inner=66, upper_outer=51, lower_outer=57, inner_corners=(60, 64),
    outer_corners=(48, 54), eye_corners=(36, 45), nose_tip=30, chin=8)

SCHEMES = {s.name: s for s in (MEDIAPIPE_478, IBUG_68)}


def scheme_for(landmarks: np.ndarray) -> LandmarkScheme:
    """The layout of a landmark array, from its number of points."""
    return IBUG_68 if len(landmarks) == 68 else MEDIAPIPE_478


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

    landmarks: (478, 2) MediaPipe or (68, 2) iBUG pixel coordinates. Returns (len(GEOMETRY_NAMES),) float32.
    """
    p, s = landmarks, scheme_for(landmarks)
    iod = float(np.linalg.norm(p[s.eye_corners[0]] - p[s.eye_corners[1]])) + 1e-6
    return np.array([
        np.linalg.norm(p[s.upper_inner] - p[s.lower_inner]) / iod,
        _polygon_area(p[list(s.inner_lip)]) / iod**2,
        np.linalg.norm(p[s.inner_corners[0]] - p[s.inner_corners[1]]) / iod,
        np.linalg.norm(p[s.upper_outer] - p[s.lower_outer]) / iod,
        _polygon_area(p[list(s.outer_lip)]) / iod**2,
        np.linalg.norm(p[s.nose_tip] - p[s.chin]) / iod,
    ], dtype=np.float32)


def mouth_affine(landmarks: np.ndarray, width: int = CROP_W, height: int = CROP_H) -> np.ndarray:
    """2x3 affine that maps the image to a crop with the mouth corners level and centred.

    The mouth (outer corners) spans half the crop width; the crop is centred on the lip centre.
    """
    s = scheme_for(landmarks)
    left, right = landmarks[s.outer_corners[0]], landmarks[s.outer_corners[1]]
    centre = landmarks[list(s.outer_lip)].mean(axis=0)
    dx, dy = right - left
    angle = np.degrees(np.arctan2(dy, dx))
    scale = (0.5 * width) / max(float(np.hypot(dx, dy)), 1e-3)
    m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), float(angle), scale)
    m[0, 2] += width / 2 - centre[0]
    m[1, 2] += height / 2 - centre[1]
    return m


def grey_image(image: np.ndarray) -> np.ndarray:
    """(H, W) uint8 grey of an (H, W, 3) RGB image (what :func:`mouth_crop` crops from)."""
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def mouth_crop(image: np.ndarray, landmarks: np.ndarray, width: int = CROP_W,
               height: int = CROP_H, grey: bool = True, grey_src: np.ndarray | None = None
               ) -> np.ndarray:
    """Landmark-aligned mouth crop: (height, width) uint8 grey, or (height, width, 3) RGB.

    grey_src: ``grey_image(image)`` when the caller already has it (several crops per frame)."""
    m = mouth_affine(landmarks, width, height)
    if grey:
        src = grey_src if grey_src is not None else grey_image(image)
    else:
        src = image
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
