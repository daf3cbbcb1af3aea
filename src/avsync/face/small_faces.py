"""Second look for faces too small for the normal pass (wide shots, panels, debates).

The normal pass gives MediaPipe's FaceLandmarker whole frames downscaled to 640 px. Its face
detector (BlazeFace short range) works on a 128x128 copy of that, so a 40 px face in a 1920x1080
frame becomes ~3 px and vanishes. Here, at up to SEARCH_MAX_SIDE pixels:

* every REDETECT_S seconds, the same BlazeFace model (``face_detector.tflite`` from the
  landmarker's own bundle, nothing downloaded) runs on overlapping square tiles of TILE_SIDES_PX,
  so a 40 px face fills a sixth of a 256 px tile;
* each face found becomes a region of interest (ROI_SCALE x the face's side) that follows the
  face from frame to frame (re-centred on the last landmarks); each ROI has its own landmarker
  (VIDEO mode, one face) fed a CROP_PX x CROP_PX resampled crop, where the face is ~85 px;
* the landmarks are mapped back to the frame's pixels, so tracks, mouth crops and signals are
  built as usual (from the higher resolution frame).
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from avsync.face.landmarks import (
    FaceDetection,
    LandmarkBackend,
    face_landmarker_model_path,
    quiet_native_stderr,
)
from avsync.face.tracks import box_iou

SEARCH_MAX_SIDE: int = 1920
"""Longest side (pixels) of the frames searched for small faces (4K is halved)."""

TILE_SIDES_PX: tuple[int, ...] = (256, 512)
"""Square tile sides for the face search; tiles overlap by half."""

REDETECT_S: float = 1.0
"""Seconds between tile searches (new faces, faces after a cut)."""

ROI_SCALE: float = 3.0
"""Side of a face's region of interest, in face sides (room to move between frames)."""

CROP_PX: int = 256
"""Side of the crop handed to a region's landmarker."""

MAX_MISSED_FRAMES: int = 12
"""A region whose landmarker misses its face this many frames in a row is dropped."""

MAX_UNCONFIRMED_FRAMES: int = 3
"""A new region whose landmarker finds no face in this many frames was a false detection: it is
dropped and its box is not searched again."""

MIN_DETECTION_SCORE: float = 0.5
"""BlazeFace score for a tile detection (the region's landmarker confirms the face)."""


def _tiles(width: int, height: int, side: int) -> list[tuple[int, int, int, int]]:
    """Overlapping (x0, y0, x1, y1) squares of ``side`` covering the frame (clipped at its edge)."""
    if side >= max(width, height):
        return [(0, 0, width, height)]
    step = side // 2
    xs = list(range(0, max(1, width - side), step)) + [max(0, width - side)]
    ys = list(range(0, max(1, height - side), step)) + [max(0, height - side)]
    return [(x, y, min(x + side, width), min(y + side, height))
            for y in sorted(set(ys)) for x in sorted(set(xs))]


def _contains(box: tuple[float, ...], x: float, y: float) -> bool:
    return box[0] <= x <= box[2] and box[1] <= y <= box[3]


class TileFaceDetector:
    """BlazeFace (the landmarker bundle's face detector) over overlapping tiles of a frame."""

    def __init__(self, min_score: float = MIN_DETECTION_SCORE) -> None:
        from mediapipe.tasks.python import BaseOptions, vision

        model = zipfile.ZipFile(face_landmarker_model_path()).read("face_detector.tflite")
        options = vision.FaceDetectorOptions(base_options=BaseOptions(model_asset_buffer=model),
                                             min_detection_confidence=min_score)
        with quiet_native_stderr():
            self._detector = vision.FaceDetector.create_from_options(options)

    def detect(self, image: np.ndarray) -> list[tuple[tuple[float, float, float, float], float]]:
        """Faces in ``image`` (H, W, 3) RGB: [((x0, y0, x1, y1) pixels, score)], best first,
        duplicates across tiles and scales merged (IoU > 0.3 or one centre inside the other)."""
        import mediapipe as mp

        h, w = image.shape[:2]
        found: list[tuple[tuple[float, float, float, float], float]] = []
        for side in TILE_SIDES_PX:
            for x0, y0, x1, y1 in _tiles(w, h, side):
                tile = np.ascontiguousarray(image[y0:y1, x0:x1])
                result = self._detector.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=tile))
                for d in result.detections:
                    b = d.bounding_box
                    box = (float(x0 + b.origin_x), float(y0 + b.origin_y),
                           float(x0 + b.origin_x + b.width), float(y0 + b.origin_y + b.height))
                    found.append((box, float(d.categories[0].score)))
        kept: list[tuple[tuple[float, float, float, float], float]] = []
        for box, score in sorted(found, key=lambda f: -f[1]):
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            if not any(box_iou(box, k) > 0.3 or _contains(k, cx, cy) for k, _ in kept):
                kept.append((box, score))
        return kept

    def close(self) -> None:
        self._detector.close()


@dataclass
class _Region:
    """A square region of the frame that follows one face: centre and side in pixels."""

    cx: float
    cy: float
    side: float
    landmarker: LandmarkBackend
    face_box: tuple[float, float, float, float]
    missed: int = 0
    confirmed: bool = False


class RegionLandmarker:
    """A LandmarkBackend for small faces: tile search for faces, then one landmarker per face
    on an enlarged crop around it; landmarks come back in the frame's pixels.

    make_landmarker: builds a one-face landmarker (e.g. ``lambda: create_landmarker(b, 1)``).
    """

    def __init__(self, make_landmarker: Callable[[], LandmarkBackend], max_faces: int = 4,
                 redetect_s: float = REDETECT_S) -> None:
        self._make = make_landmarker
        self._max_faces = max_faces
        self._redetect_s = redetect_s
        self._search = TileFaceDetector()
        self._regions: list[_Region] = []
        self._rejected: list[tuple[float, float, float, float]] = []
        self._next_search_s: float | None = None
        self.n_searches = 0

    def _add_regions(self, image: np.ndarray) -> None:
        """New regions for faces not yet followed, largest first (speakers before thumbnails)."""
        self.n_searches += 1
        found = self._search.detect(image)
        for box, _score in sorted(found, key=lambda f: -(f[0][2] - f[0][0]) * (f[0][3] - f[0][1])):
            if len(self._regions) >= self._max_faces + 2:  # a couple of candidates to confirm
                break
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            if any(_contains(r.face_box, cx, cy) or box_iou(r.face_box, box) > 0.3
                   for r in self._regions) or any(box_iou(b, box) > 0.3 for b in self._rejected):
                continue
            side = ROI_SCALE * max(box[2] - box[0], box[3] - box[1])
            self._regions.append(_Region(cx, cy, side, self._make(), box))

    def _crop(self, image: np.ndarray, r: _Region) -> tuple[np.ndarray, float, float, float]:
        """CROP_PX square crop around ``r`` (black outside the frame): crop, scale, x0, y0."""
        scale = CROP_PX / r.side
        x0, y0 = r.cx - r.side / 2, r.cy - r.side / 2
        m = np.array([[scale, 0.0, -x0 * scale], [0.0, scale, -y0 * scale]], np.float64)
        crop = cv2.warpAffine(image, m, (CROP_PX, CROP_PX), flags=cv2.INTER_AREA
                              if scale < 1 else cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        return crop, scale, x0, y0

    def detect(self, image: np.ndarray, time_s: float) -> list[FaceDetection]:
        if self._next_search_s is None or time_s >= self._next_search_s:
            self._add_regions(image)
            self._next_search_s = time_s + self._redetect_s
        faces: list[FaceDetection] = []
        keep: list[_Region] = []
        for r in self._regions:
            crop, scale, x0, y0 = self._crop(image, r)
            found = r.landmarker.detect(crop, time_s)
            if not found:
                r.missed += 1
                if r.missed < (MAX_MISSED_FRAMES if r.confirmed else MAX_UNCONFIRMED_FRAMES):
                    keep.append(r)
                else:
                    r.landmarker.close()
                    if not r.confirmed:
                        self._rejected.append(r.face_box)
                continue
            xy = found[0].landmarks / scale + np.array([x0, y0], np.float32)
            box = (float(xy[:, 0].min()), float(xy[:, 1].min()),
                   float(xy[:, 0].max()), float(xy[:, 1].max()))
            if any(box_iou(box, f.box) > 0.5 for f in faces):  # two regions on one face
                r.landmarker.close()
                continue
            faces.append(FaceDetection(landmarks=xy.astype(np.float32),
                                       blendshapes=found[0].blendshapes, box=box))
            side = ROI_SCALE * max(box[2] - box[0], box[3] - box[1])
            r.cx, r.cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            r.side = 0.7 * r.side + 0.3 * side
            r.face_box, r.missed, r.confirmed = box, 0, True
            keep.append(r)
        self._regions = keep
        faces.sort(key=lambda f: -(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
        return faces[: self._max_faces]

    def close(self) -> None:
        for r in self._regions:
            r.landmarker.close()
        self._regions = []
        self._search.close()
