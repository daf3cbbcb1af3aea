"""Dubbing: regenerate the mouth of a face video so that it speaks new audio.

``avsync generate --video FACE.mp4 --audio NEW.wav -o out.mp4``:

1. pass 1 over the video: face landmarks in every frame (one face, MediaPipe; frames larger than
   ANALYSIS_MAX_SIDE are analysed downscaled, the landmarks scaled back to full resolution);
   the identity lip image is the 64 x 64 aligned mouth crop of the frame whose mouth is the most
   closed (the generator adds the speech's motion to it);
2. the generator makes 64 x 64 lip frames at 25 fps for the new audio (as ``avsync generate``);
3. pass 2: every video frame at time t (from its first frame) gets generated frame round(t * 25),
   warped back along the frame's mouth affine, colour-matched to the frame around the mouth and
   blended in with a feathered mask (the hull of the frame's lip landmarks, widened to cover the
   jaw's motion, united with the generator's mouth area). Frames without a face are kept.

The output has the video's frame rate and size, re-encoded (H.264), with the new audio; it lasts
min(video, audio). The input files are only read; the output is written atomically.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avsync.errors import AvsyncError, NoFaceError
from avsync.lipgen.model import GEN_FPS, IMAGE_SIZE

ANALYSIS_MAX_SIDE: int = 640
"""Frames are searched for landmarks at most this large (pixels); the paste is at full size."""

MASK_SCALE_XY: tuple[float, float] = (1.35, 2.0)
"""The lip hull is widened by these factors about its centre (x, y) to cover the jaw's motion."""

MASK_ELLIPSE_PX: tuple[float, float] = (20.0, 14.0)
"""Semi-axes (x, y) of the generator's mouth area in the 64 x 64 crop, always blended."""

MASK_FEATHER_PX: float = 2.5
"""Gaussian feather of the mask, in crop pixels (sigma)."""


@dataclass
class FaceFrames:
    """Pass 1 over a video. landmarks: one (478, 2) float32 array in full-resolution pixels, or
    None, per frame; times_s: (T,) frame times; fps; size (width, height); identity: (64, 64, 3)
    uint8 RGB lip image (the most closed mouth)."""

    landmarks: list[np.ndarray | None]
    times_s: np.ndarray
    fps: float
    size: tuple[int, int]
    identity: np.ndarray


def find_faces(path: str | Path, face_backend: str = "mediapipe") -> FaceFrames:
    """Landmarks of the (one) face in every frame of ``path`` and the identity lip image."""
    import cv2

    from avsync.face.landmarks import create_landmarker
    from avsync.face.mouth import geometry_signals, mouth_crop
    from avsync.io import iter_video_frames, probe

    info = probe(path)
    if not info.has_video:
        raise AvsyncError(f"{path}: no video stream to dub")
    marks: list[np.ndarray | None] = []
    times: list[float] = []
    best, best_aperture, size = None, np.inf, (0, 0)
    landmarker = create_landmarker(face_backend, max_faces=1)
    try:
        for frame in iter_video_frames(path, max_side=None):
            img = frame.image
            size = (img.shape[1], img.shape[0])
            scale = min(1.0, ANALYSIS_MAX_SIDE / max(img.shape[:2]))
            probe_img = img if scale == 1.0 else cv2.resize(img, None, fx=scale, fy=scale,
                                                           interpolation=cv2.INTER_AREA)
            faces = landmarker.detect(np.ascontiguousarray(probe_img), frame.time_s)
            lm = (faces[0].landmarks / scale).astype(np.float32) if faces else None
            marks.append(lm)
            times.append(frame.time_s)
            if lm is not None:
                aperture = float(geometry_signals(lm)[0])
                if aperture < best_aperture:
                    best_aperture = aperture
                    best = mouth_crop(img, lm, IMAGE_SIZE, IMAGE_SIZE, grey=False)
    finally:
        landmarker.close()
    if best is None:
        raise NoFaceError(f"{path}: no face found in any frame; nothing to dub")
    t = np.asarray(times, np.float64)
    fps = float(info.fps) if info.fps else (float(1.0 / np.median(np.diff(t))) if len(t) > 1 else GEN_FPS)
    return FaceFrames(marks, t, fps, size, best)


def mouth_mask(lips_px: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """Feathered blend mask in crop pixels, (size, size) float32 in [0, 1], for the frame's lip
    points in that crop (lips_px (40, 2): 20 inner then 20 outer; NaN rows are ignored)."""
    import cv2

    mask = np.zeros((size, size), np.float32)
    centre = (size / 2, size / 2 + 2 * size / IMAGE_SIZE)
    axes = (MASK_ELLIPSE_PX[0] * size / IMAGE_SIZE, MASK_ELLIPSE_PX[1] * size / IMAGE_SIZE)
    cv2.ellipse(mask, (centre, (2 * axes[0], 2 * axes[1]), 0.0), 1.0, -1)
    pts = np.asarray(lips_px, np.float64)
    pts = pts[np.isfinite(pts).all(axis=1)]
    if len(pts) >= 3:
        c = pts.mean(axis=0)
        hull = cv2.convexHull(((pts - c) * np.asarray(MASK_SCALE_XY) + c).astype(np.float32))
        cv2.fillConvexPoly(mask, np.rint(hull).astype(np.int32), 1.0)
    sigma = MASK_FEATHER_PX * size / IMAGE_SIZE
    return np.clip(cv2.GaussianBlur(mask, (0, 0), sigma), 0.0, 1.0)


def paste_mouth(frame: np.ndarray, landmarks: np.ndarray, lips: np.ndarray) -> np.ndarray:
    """``frame`` (H, W, 3) uint8 RGB with the generated 64 x 64 ``lips`` crop blended in along
    the frame's mouth affine (see the module doc); a new array."""
    import cv2

    from avsync.face.mouth import mouth_affine
    from avsync.face.tracks import lip_points_in_crop

    m = mouth_affine(landmarks, IMAGE_SIZE, IMAGE_SIZE)
    real = cv2.warpAffine(frame, m, (IMAGE_SIZE, IMAGE_SIZE), flags=cv2.INTER_AREA,
                          borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    alpha = mouth_mask(lip_points_in_crop(landmarks, IMAGE_SIZE))
    ring = (alpha > 0.02) & (alpha < 0.5)
    gen = lips.astype(np.float32)
    if ring.any():  # lighting of this frame, not of the identity frame
        gen = gen + (real[ring].mean(axis=0) - gen[ring].mean(axis=0))
    inv = cv2.invertAffineTransform(m)
    corners = np.array([[0, 0, 1], [IMAGE_SIZE, 0, 1], [0, IMAGE_SIZE, 1], [IMAGE_SIZE, IMAGE_SIZE, 1]],
                       np.float64) @ inv.T
    h, w = frame.shape[:2]
    x0, y0 = (max(0, int(np.floor(v))) for v in corners.min(axis=0))
    x1, y1 = min(w, int(np.ceil(corners[:, 0].max()))), min(h, int(np.ceil(corners[:, 1].max())))
    if x1 <= x0 or y1 <= y0:
        return frame.copy()
    inv_roi = inv.copy()
    inv_roi[:, 2] -= (x0, y0)
    roi = (x1 - x0, y1 - y0)
    big = cv2.warpAffine(np.clip(gen, 0, 255), inv_roi, roi, flags=cv2.INTER_CUBIC,
                         borderMode=cv2.BORDER_REPLICATE)
    a = cv2.warpAffine(alpha, inv_roi, roi, flags=cv2.INTER_LINEAR, borderValue=0.0)[..., None]
    out = frame.copy()
    patch = out[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = np.clip(np.rint(patch * (1 - a) + big * a), 0, 255).astype(np.uint8)
    return out


def dubbed_frames(video_path: str | Path, faces: FaceFrames, lips: np.ndarray,
                  duration_s: float) -> Iterator[np.ndarray]:
    """Pass 2: the video's frames before ``duration_s`` (from its first frame), each with the
    generated lip frame of its time pasted in (``lips`` (N, 64, 64, 3) at 25 fps)."""
    from avsync.io import iter_video_frames

    t0 = float(faces.times_s[0])
    for i, frame in enumerate(iter_video_frames(video_path, max_side=None)):
        if i >= len(faces.landmarks) or frame.time_s - t0 >= duration_s - 1e-6:
            return
        lm = faces.landmarks[i]
        k = min(int(round((frame.time_s - t0) * GEN_FPS)), len(lips) - 1)
        yield frame.image if lm is None else paste_mouth(frame.image, lm, lips[k])


def dub(
    video_path: str | Path,
    audio_path: str | Path,
    out_path: str | Path,
    checkpoint: str | Path | None = None,
    overwrite: bool = False,
    on_window: Callable[[int, int], None] | None = None,
) -> dict[str, object]:
    """Write ``out_path``: the video with its mouth regenerated to say ``audio_path``'s speech,
    the new audio muxed in (see the module doc). Returns a summary.

    ``checkpoint`` None: the paper-architecture generator (``generate.DUB_GENERATOR``), not the
    default of ``generate --image``: dubbing is judged by the sync of the lips with the new
    speech, and the residual generator's gentler edit moved them less (docs/BENCHMARKS.md, "Lip
    generation v4", dubbing rows)."""
    from avsync.io import check_output_path
    from avsync.io.media import check_input_file
    from avsync.io.stream_writer import write_stream
    from avsync.lipgen.generate import DUB_GENERATOR, generate_frames, load_generator, speech_logmel

    check_input_file(video_path)
    out = check_output_path(out_path, overwrite=overwrite, protect=(video_path, audio_path))
    samples, logmel = speech_logmel(audio_path)
    generator = load_generator(checkpoint if checkpoint is not None else DUB_GENERATOR)
    faces = find_faces(video_path)
    video_s = (faces.times_s[-1] - faces.times_s[0]) + 1.0 / faces.fps
    duration_s = min(video_s, len(samples) / 16000)
    n_gen = max(1, int(np.ceil(duration_s * GEN_FPS)))
    lips = generate_frames(generator, logmel, faces.identity, n_gen, on_window)
    n_frames = int(np.sum(faces.times_s - faces.times_s[0] < duration_s - 1e-6))
    if n_frames == 0:
        raise AvsyncError(f"{audio_path}: shorter than one video frame; nothing to dub")
    audio = samples[: int(round(n_frames / faces.fps * 16000))]
    write_stream(out, dubbed_frames(video_path, faces, lips, duration_s), faces.fps, faces.size, audio)
    n_face = sum(lm is not None for lm in faces.landmarks[:n_frames])
    return {
        "path": str(out),
        "frames": n_frames,
        "fps": faces.fps,
        "duration_s": n_frames / faces.fps,
        "face_frames": n_face,
        "size": list(faces.size),
    }
