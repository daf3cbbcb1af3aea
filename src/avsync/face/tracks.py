"""Face tracks over a video: shot-cut detection, frame-to-frame association, per-track signals.

Everything streams: per frame we keep only a few floats per face, so memory grows by ~100 bytes
per frame and face, never by image size. With ``keep_crops=True`` (opt-in, for building training
data) each frame also keeps a 48x48 grey mouth crop and 40 normalised lip points: about 2.5 KB per
frame and face. ``rgb_crop_size=S`` (for the generation data) also keeps an S x S RGB mouth crop and
the lip points in that crop's pixel coordinates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from avsync.face.landmarks import FaceDetection, LandmarkBackend
from avsync.face.mouth import (
    IBUG_68,
    SIGNAL_NAMES,
    flow_signals,
    frame_signals,
    grey_image,
    mouth_affine,
    mouth_crop,
    scheme_for,
)
from avsync.face.rows import RowStore

CUT_THRESHOLD: float = 0.45
"""Half L1 distance between consecutive frames' colour histograms above which a cut is declared."""

MAX_GAP_FRAMES: int = 6
"""A track survives this many frames without a matching face (blinks of the detector)."""

MIN_IOU: float = 0.3
"""Minimum box overlap to continue a track."""

KEPT_CROP_SIZE: int = 48
"""Side (pixels) of the square grey mouth crop kept with ``keep_crops`` (mouth = half its width)."""

N_LIP_POINTS: int = 40
"""Lip points kept with ``keep_crops``: MediaPipe's 20 inner + 20 outer lip landmarks."""


def lip_points(landmarks: np.ndarray) -> np.ndarray:
    """Scale-free lip shape of one face: (N_LIP_POINTS, 2) float16.

    landmarks: (478, 2) MediaPipe pixel coordinates. Rows are the 20 inner then the 20 outer lip
    points (MEDIAPIPE_478 order), minus the outer-lip centroid, divided by the inter-ocular
    distance (outer eye corners), so units are inter-ocular distances. Not rotated.
    For the 68-point iBUG layout (dlib) the result is all NaN: its 8 + 12 lip points have no
    40-point equivalent.
    """
    s = scheme_for(landmarks)
    if s is IBUG_68:
        return np.full((N_LIP_POINTS, 2), np.nan, np.float16)
    p = np.asarray(landmarks, np.float64)
    iod = float(np.linalg.norm(p[s.eye_corners[0]] - p[s.eye_corners[1]])) + 1e-6
    centre = p[list(s.outer_lip)].mean(axis=0)
    pts = p[list(s.inner_lip) + list(s.outer_lip)]
    return ((pts - centre) / iod).astype(np.float16)


def lip_points_in_crop(landmarks: np.ndarray, size: int) -> np.ndarray:
    """The 20 inner + 20 outer lip points in the pixels of the ``size`` x ``size`` aligned mouth
    crop (:func:`mouth_crop` framing): (N_LIP_POINTS, 2) float32; NaN for the iBUG layout."""
    s = scheme_for(landmarks)
    if s is IBUG_68:
        return np.full((N_LIP_POINTS, 2), np.nan, np.float32)
    m = mouth_affine(landmarks, size, size)
    pts = np.asarray(landmarks, np.float64)[list(s.inner_lip) + list(s.outer_lip)]
    return (pts @ m[:, :2].T + m[:, 2]).astype(np.float32)


@dataclass
class Track:
    """One face followed through one shot.

    frame_index: (T,) int frame numbers in the video; time_s: (T,) frame times (s);
    signals: (T, len(SIGNAL_NAMES)) float32, NaN where the face was missed in a gap frame.
    box_area: mean box area as a fraction of the image.

    Only filled when tracking with ``keep_crops=True`` (else empty): mouth: (T,) of
    (KEPT_CROP_SIZE, KEPT_CROP_SIZE) uint8 grey aligned mouth crops (a gap frame repeats the
    previous crop); lips: (T,) of (N_LIP_POINTS, 2) float16 (see :func:`lip_points`; NaN in gap
    frames); valid: (T,) bool, False for gap frames (face not detected, values filled in).
    With ``rgb_crop_size=S`` also rgb: (T,) of (S, S, 3) uint8 RGB aligned mouth crops (same framing
    as ``mouth``) and lips_px: (T,) of (N_LIP_POINTS, 2) float32 lip points in that crop's pixels
    (NaN in gap frames).
    """

    track_id: int
    shot: int
    frame_index: list[int] = field(default_factory=list)
    time_s: list[float] = field(default_factory=list)
    signals: list[np.ndarray] = field(default_factory=list)
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    last_seen: int = -1
    prev_crop: np.ndarray | None = None
    mouth: list[np.ndarray] | RowStore = field(default_factory=list)
    lips: list[np.ndarray] | RowStore = field(default_factory=list)
    valid: list[bool] = field(default_factory=list)
    rgb: list[np.ndarray] = field(default_factory=list)
    lips_px: list[np.ndarray] = field(default_factory=list)

    @property
    def n_frames(self) -> int:
        return len(self.frame_index)

    @property
    def start_s(self) -> float:
        return self.time_s[0]

    @property
    def end_s(self) -> float:
        return self.time_s[-1]

    def signal_matrix(self) -> np.ndarray:
        """(T, S) float32 signals with short gaps linearly interpolated."""
        x = np.stack(self.signals).astype(np.float32)
        for j in range(x.shape[1]):
            col = x[:, j]
            bad = ~np.isfinite(col)
            if bad.all():
                col[:] = 0.0
            elif bad.any():
                idx = np.arange(len(col))
                col[bad] = np.interp(idx[bad], idx[~bad], col[~bad])
        return x


@dataclass
class VisualAnalysis:
    """Result of the visual front-end for one video."""

    tracks: list[Track]
    n_frames: int
    frame_times_s: np.ndarray
    cuts: list[int]
    image_size: tuple[int, int]
    rate_fps: float | None = None
    """Set when the frames were resampled onto a grid of this rate (see face.frame_rate)."""


def frame_hist(image: np.ndarray) -> np.ndarray:
    """(512,) normalised 8x8x8 RGB histogram of a 64x36 thumbnail (shot-cut test)."""
    small = cv2.resize(image, (64, 36), interpolation=cv2.INTER_AREA)
    h = cv2.calcHist([small], [0, 1, 2], None, [8, 8, 8], [0, 256] * 3).ravel()
    return h / max(h.sum(), 1.0)


def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True, eq=False)
class PrecutFace(FaceDetection):
    """A face whose tracker crops were cut ahead, on another thread (face.chunks):
    crops = :func:`cut_crops` of its frame, so the tracker needs no image for it."""

    crops: tuple = ()


def cut_crops(image: np.ndarray, grey: np.ndarray | None, landmarks: np.ndarray, keep_crops: bool,
              rgb_crop_size: int) -> tuple:
    """(mouth crop for the lip flow, kept KEPT_CROP_SIZE grey crop or None, RGB crop or None):
    the crops :class:`Tracker` cuts for one face (``keep_crops`` / ``rgb_crop_size`` as its own)."""
    crop = mouth_crop(image, landmarks, grey_src=grey)
    kept = (mouth_crop(image, landmarks, KEPT_CROP_SIZE, KEPT_CROP_SIZE, grey_src=grey)
            if keep_crops else None)
    rgb = (mouth_crop(image, landmarks, rgb_crop_size, rgb_crop_size, grey=False)
           if keep_crops and rgb_crop_size else None)
    return crop, kept, rgb


class Tracker:
    """Greedy IoU association of per-frame detections into tracks, split at shot cuts.

    keep_crops: also keep per-frame mouth crops, lip points and validity in each Track;
    rgb_crop_size: with keep_crops, also RGB crops of that side and lip points in their pixels.
    """

    def __init__(self, keep_crops: bool = False, rgb_crop_size: int = 0) -> None:
        self.keep_crops = keep_crops
        self.rgb_crop_size = rgb_crop_size if keep_crops else 0
        self.finished: list[Track] = []
        self.active: list[Track] = []
        self.shot = 0
        self._next_id = 0

    def cut(self) -> None:
        self.finished.extend(self.active)
        self.active = []
        self.shot += 1

    def update(self, index: int, time_s: float, image: np.ndarray,
               faces: list[FaceDetection], grey: np.ndarray | None = None) -> None:
        """Associate one frame's faces; grey: ``grey_image(image)`` if already computed.
        image may be None when every face is a :class:`PrecutFace` (crops cut ahead)."""
        if faces and grey is None and image is not None:
            grey = grey_image(image)
        pairs = sorted(((box_iou(t.boxes[-1], f.box), i, j) for i, t in enumerate(self.active)
                        for j, f in enumerate(faces)), reverse=True)
        used_t, used_f = set(), set()
        for iou, i, j in pairs:
            if iou < MIN_IOU or i in used_t or j in used_f:
                continue
            used_t.add(i)
            used_f.add(j)
            self._append(self.active[i], index, time_s, image, grey, faces[j])
        for j, face in enumerate(faces):
            if j not in used_f:
                track = Track(track_id=self._next_id, shot=self.shot)
                self._next_id += 1
                if self.keep_crops:  # compact per-frame storage (long inputs: see face.rows)
                    track.mouth = RowStore((KEPT_CROP_SIZE, KEPT_CROP_SIZE), np.uint8)
                    track.lips = RowStore((N_LIP_POINTS, 2), np.float16)
                self.active.append(track)
                self._append(track, index, time_s, image, grey, face)
        still = []
        for track in self.active:
            if index - track.last_seen > MAX_GAP_FRAMES:
                self.finished.append(track)
            else:
                still.append(track)
        self.active = still

    def _append(self, track: Track, index: int, time_s: float, image: np.ndarray,
                grey: np.ndarray, face: FaceDetection) -> None:
        # Fill the frames the detector missed with NaN rows (interpolated later).
        if track.last_seen >= 0:
            for k in range(track.last_seen + 1, index):
                track.frame_index.append(k)
                track.time_s.append(np.nan)
                track.signals.append(np.full(len(SIGNAL_NAMES), np.nan, np.float32))
                track.boxes.append(track.boxes[-1])
                if self.keep_crops:
                    track.mouth.append(track.mouth[-1])
                    track.lips.append(np.full((N_LIP_POINTS, 2), np.nan, np.float16))
                    track.valid.append(False)
                    if self.rgb_crop_size:
                        track.rgb.append(track.rgb[-1])
                        track.lips_px.append(np.full((N_LIP_POINTS, 2), np.nan, np.float32))
            track.prev_crop = track.prev_crop if index - track.last_seen == 1 else None
        crop, kept, rgb = (face.crops if isinstance(face, PrecutFace)
                           else cut_crops(image, grey, face.landmarks, self.keep_crops, self.rgb_crop_size))
        flow = flow_signals(track.prev_crop, crop)
        track.prev_crop = crop
        track.frame_index.append(index)
        track.time_s.append(time_s)
        track.signals.append(frame_signals(face, flow))
        track.boxes.append(face.box)
        track.last_seen = index
        if self.keep_crops:
            track.mouth.append(kept)
            track.lips.append(lip_points(face.landmarks))
            track.valid.append(True)
            if self.rgb_crop_size:
                track.rgb.append(rgb)
                track.lips_px.append(lip_points_in_crop(face.landmarks, self.rgb_crop_size))

    def close(self) -> list[Track]:
        self.finished.extend(self.active)
        self.active = []
        for t in self.finished:
            t.prev_crop = None
        return sorted(self.finished, key=lambda t: (t.frame_index[0], t.track_id))


def analyse_frames(frames: Iterable, landmarker: LandmarkBackend,
                   on_frame: Callable[[int], None] | None = None,
                   keep_crops: bool = False, rgb_crop_size: int = 0) -> VisualAnalysis:
    """Run landmarks + tracking over frames (objects with ``index``, ``time_s``, ``image``).

    keep_crops: also store per-frame mouth crops and lip points in the tracks (see Track);
    rgb_crop_size: with keep_crops, also RGB crops of that side (see Track).
    """
    detected = ((frame, landmarker.detect(frame.image, frame.time_s)) for frame in frames)
    return track_detections(detected, on_frame, keep_crops, rgb_crop_size)


def track_frames(detected: Iterable, tracker: Tracker, on_frame: Callable[[int], None] | None = None
                 ) -> Iterator[tuple[int, Any, np.ndarray, bool]]:
    """Shot cuts + ``tracker.update`` over ``(frame, faces)`` pairs in frame order; yields
    ``(n, frame, image, cut)`` after each frame's update (cut: a shot cut ended the tracks
    before it), then calls ``on_frame(n)``. The tracker is left open for the caller.

    A frame may carry ``hist`` (its :func:`frame_hist`) and ``grey`` (``grey_image(image)``),
    computed ahead by a decoding thread (face.pipeline); else they are computed here."""
    prev_hist = None
    for n, (frame, faces) in enumerate(detected):
        image = frame.image
        hist = getattr(frame, "hist", None)
        hist = frame_hist(image) if hist is None else hist
        cut = prev_hist is not None and 0.5 * np.abs(hist - prev_hist).sum() > CUT_THRESHOLD
        if cut:
            tracker.cut()
        prev_hist = hist
        tracker.update(n, frame.time_s, image, faces, getattr(frame, "grey", None))
        yield n, frame, image, bool(cut)
        if on_frame is not None:
            on_frame(n)


def track_detections(detected: Iterable, on_frame: Callable[[int], None] | None = None,
                     keep_crops: bool = False, rgb_crop_size: int = 0) -> VisualAnalysis:
    """Shot cuts + tracking over ``(frame, faces)`` pairs in frame order (see analyse_frames).

    A frame may carry ``hist`` (its :func:`frame_hist`) and ``grey`` (``grey_image(image)``),
    computed ahead by a decoding thread (face.pipeline); else they are computed here."""
    tracker = Tracker(keep_crops=keep_crops, rgb_crop_size=rgb_crop_size)
    times: list[float] = []
    cuts: list[int] = []
    size = (0, 0)
    for n, frame, image, cut in track_frames(detected, tracker, on_frame):
        size = (image.shape[1], image.shape[0]) if image is not None else frame.size
        if cut:
            cuts.append(n)
        times.append(frame.time_s)
    tracks = tracker.close()
    frame_times = np.asarray(times, dtype=np.float64)
    for t in tracks:  # gap frames get their true times
        t.time_s = [float(frame_times[i]) for i in t.frame_index]
    return VisualAnalysis(tracks=tracks, n_frames=len(times), frame_times_s=frame_times,
                          cuts=cuts, image_size=size)
