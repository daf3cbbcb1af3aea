"""Reading MediaPipe FaceLandmarker results straight from its C structs.

``FaceLandmarker.detect_for_video`` turns each result into Python objects (478
``NormalizedLandmark`` per face, 52 ``Category`` per face) that we then turn back into arrays:
about 2 ms of pure Python per frame and face on this machine. Here the same C call is made and
the landmark coordinates are read as one NumPy view of the C array, so the numbers are the
same float32 values (tests/test_speed.py compares both readings).

This reads private attributes of mediapipe's Python wrapper (``_lib``, ``_handle``; mediapipe
>= 0.10.30's ctypes API); :func:`raw_result_available` says whether they are there, and the
caller falls back to the public API when they are not.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np


def _structs() -> tuple[Any, Any, Any] | None:
    try:
        from mediapipe.tasks.python.components.containers import category_c, landmark_c
        from mediapipe.tasks.python.vision import face_landmarker
    except ImportError:
        return None
    return face_landmarker.MpFaceLandmarkerResultC, landmark_c.MpNormalizedLandmarkC, category_c.MpCategoryC


def raw_result_available(landmarker: Any) -> bool:
    """True when ``landmarker`` (a mediapipe FaceLandmarker) exposes what read_result needs."""
    structs = _structs()
    lib = getattr(landmarker, "_lib", None)
    return (structs is not None and getattr(landmarker, "_handle", None) is not None
            and hasattr(lib, "MpFaceLandmarkerDetectForVideo")
            and hasattr(lib, "MpFaceLandmarkerCloseResult"))


def _dtype(struct: Any, names: tuple[str, ...], formats: tuple[str, ...]) -> np.dtype:
    return np.dtype({"names": list(names), "formats": list(formats),
                     "offsets": [getattr(struct, n).offset for n in names],
                     "itemsize": ctypes.sizeof(struct)})


def _view(ptr: Any, count: int, struct: Any, dtype: np.dtype) -> np.ndarray:
    """(count,) structured view of a C array of ``struct`` (valid until the result is freed)."""
    if count == 0:
        return np.zeros(0, dtype)
    buf = (ctypes.c_char * (count * ctypes.sizeof(struct))).from_address(ctypes.addressof(ptr.contents))
    return np.frombuffer(buf, dtype)


def read_result(landmarker: Any, mp_image: Any, time_ms: int, width: int, height: int,
                blend_names: tuple[str, ...]) -> list[tuple[np.ndarray, np.ndarray]]:
    """One ``detect_for_video`` call: per face ((N, 2) float32 landmark pixels (x, y),
    (len(blend_names),) float32 blendshape scores, NaN for a name the model did not give)."""
    result_t, point_t, cat_t = _structs()
    xy_dtype = _dtype(point_t, ("x", "y"), ("<f4", "<f4"))
    score_dtype = _dtype(cat_t, ("score",), ("<f4",))
    result = result_t()
    landmarker._lib.MpFaceLandmarkerDetectForVideo(landmarker._handle, mp_image._image_ptr, None,
                                                   time_ms, ctypes.byref(result))
    try:
        faces = []
        for i in range(result.face_landmarks_count):
            lm = result.face_landmarks[i]
            pts = _view(lm.landmarks, lm.landmarks_count, point_t, xy_dtype)
            # As the Python API: float32 -> float64, times the size, then float32.
            xy = np.stack([pts["x"].astype(np.float64) * width, pts["y"].astype(np.float64) * height],
                          axis=1).astype(np.float32)
            shapes = np.full(len(blend_names), np.nan, np.float32)
            if result.face_blendshapes_count:
                cats = result.face_blendshapes[i]
                n = cats.categories_count
                scores = _view(cats.categories, n, cat_t, score_dtype)["score"]
                by_name = {(cats.categories[j].category_name or b"").decode(): float(scores[j])
                           for j in range(n)}
                shapes = np.array([by_name.get(b, np.nan) for b in blend_names], np.float32)
            faces.append((xy, shapes))
        return faces
    finally:
        landmarker._lib.MpFaceLandmarkerCloseResult(ctypes.byref(result))
