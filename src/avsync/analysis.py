"""The method-independent analysis of a file: its faces (decode, landmarks, tracks) and its audio
features. ``avsync.inference`` scores them (and re-exports both functions, its public API)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

from avsync.errors import SilentAudioError
from avsync.face.chunks import analyse_chunked, plan_chunks, seam_keyframes_s, with_seam_resets
from avsync.face.frame_rate import analysis_rate, on_grid
from avsync.face.landmarks import DEFAULT_BACKEND, LandmarkBackend, create_landmarker
from avsync.face.pipeline import FAST_LANDMARKERS, FAST_STRIDE, analyse_stream
from avsync.face.small_faces import SEARCH_MAX_SIDE, RegionLandmarker
from avsync.face.tracks import VisualAnalysis
from avsync.features import SILENCE_RMS, AudioFeatures, stream_features
from avsync.io import iter_video_frames, probe
from avsync.io.audio import iter_audio_blocks

MIN_TRACK_FRAMES: int = 12
"""A track shorter than this (about half a second) is not scored."""

ANALYSIS_MAX_SIDE: int = 640
"""Frames are downscaled to this longest side before landmarks (speed; lips stay >20 px)."""


def frame_stream(path: str | Path, max_side: int, rotate: str | int | None, rate_fps: float | None,
                 clock: dict) -> Iterator:
    """The lazily converted frames the face analysis reads (io.frames, on the 25 fps grid when
    ``rate_fps``; face.frame_rate), the time spent waiting for each added to clock["decode"] (s)."""
    frames = _timed(iter(iter_video_frames(path, max_side=max_side, rotate=rotate, lazy=True)), clock)
    return on_grid(frames, rate_fps) if rate_fps is not None else frames


def _timed(frames: Iterator, clock: dict) -> Iterator:
    while True:
        t0 = time.perf_counter()
        try:
            frame = next(frames)
        except StopIteration:
            return
        clock["decode"] += time.perf_counter() - t0
        yield frame


def analyse_video(path: str | Path, max_faces: int = 4,
                  on_frame: Callable[[int], None] | None = None,
                  clock: dict | None = None, face_backend: str = DEFAULT_BACKEND,
                  keep_crops: bool = False, rgb_crop_size: int = 0,
                  rotate: str | int | None = "auto", fast: bool = False) -> VisualAnalysis:
    """Decode + landmarks + tracks (the expensive, method-independent part).

    rotate: "auto" turns phone clips upright from their display matrix; 0/90/180/270 force
    that clockwise turn (see avsync.io.orientation);
    keep_crops: also keep per-frame mouth crops and lip points in the tracks (training data);
    rgb_crop_size: with keep_crops, also RGB mouth crops of that side (generation data).
    Videos faster than 37.5 fps are analysed on a 25 fps grid (``rate_fps``; face.frame_rate).
    When no face stays MIN_TRACK_FRAMES at ANALYSIS_MAX_SIDE, a second pass looks for small faces
    at up to SEARCH_MAX_SIDE px (tiles + one landmarker per face crop; avsync.face.small_faces).
    The face analysis overlaps decoding, landmarks and tracking on the cores allowed
    (avsync.face.pipeline), or runs as two halves on two cores (files of 20 s or more with a
    keyframe near the middle: avsync.face.chunks), with the answers of one piece; fast:
    landmarks on every FAST_STRIDE-th frame only, interpolated between, by two landmarkers
    (measured accuracy cost: docs/BENCHMARKS.md).
    """
    clock = clock if clock is not None else {"decode": 0.0}
    clock.setdefault("decode", 0.0)
    t0 = time.perf_counter()

    rate_fps = analysis_rate(probe(path).fps)

    def run(max_side: int, make: Callable[[], LandmarkBackend], n_landmarkers: int,
            stride: int = 1, split: bool = False) -> VisualAnalysis:
        if split and n_landmarkers == 1 and stride == 1 and rate_fps is None:
            seams = seam_keyframes_s(path)  # chunks or not, a tracker starts afresh there
            make = with_seam_resets(make, seams)
            plan = plan_chunks(path, rotate, seams_s=seams)
            if plan is not None:  # two cores on keyframe chunks, the answers of one piece (face.chunks)
                analysis = analyse_chunked(path, plan[0], plan[1], make, max_side, plan[2], on_frame,
                                           keep_crops, rgb_crop_size, clock)
                analysis.rate_fps = rate_fps
                return analysis
        frames = frame_stream(path, max_side, rotate, rate_fps, clock)
        analysis = analyse_stream(frames, make, on_frame, keep_crops=keep_crops,  # face.pipeline
                                  rgb_crop_size=rgb_crop_size, n_landmarkers=n_landmarkers, clock=clock,
                                  stride=stride)
        analysis.rate_fps = rate_fps
        return analysis

    analysis = run(ANALYSIS_MAX_SIDE, lambda: create_landmarker(face_backend, max_faces=max_faces),
                   FAST_LANDMARKERS if fast else 1, FAST_STRIDE if fast else 1, split=True)
    if not any(t.n_frames >= MIN_TRACK_FRAMES for t in analysis.tracks):
        # Nothing usable at 640 px: look again for small faces (wide shots), see face.small_faces.
        t1 = time.perf_counter()
        second = run(SEARCH_MAX_SIDE, lambda: RegionLandmarker(
            lambda: create_landmarker(face_backend, max_faces=1), max_faces=max_faces), 1)
        if sum(t.n_frames for t in second.tracks) > sum(t.n_frames for t in analysis.tracks):
            analysis = second
        clock["small_faces"] = time.perf_counter() - t1  # decode + faces of the second pass
    # Pipelined (face.pipeline): "decode" ran on its own thread; "face" is the rest of the wall time.
    clock["face"] = time.perf_counter() - t0 - clock.pop("decode_wait", clock["decode"])
    return analysis


def analyse_audio(path: str | Path, audio_stream: int | None = None,
                  logmel: bool = True) -> AudioFeatures:
    """Audio features of one audio stream (None: the default one), streamed in blocks;
    ``logmel=False`` skips the log-mel that only the neural methods read."""
    feats, rms = stream_features(iter_audio_blocks(path, index=audio_stream), logmel)
    if rms < SILENCE_RMS:
        which = "" if audio_stream is None else f" (audio stream {audio_stream})"
        raise SilentAudioError(f"{path}: the audio track{which} is silent")
    return feats
