"""From a video file to a SyncResult: face tracks, score curves, offset, confidence, drift."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from avsync.errors import AvsyncError, NoFaceError, SilentAudioError
from avsync.face.landmarks import create_landmarker
from avsync.face.tracks import Track, VisualAnalysis, analyse_frames
from avsync.features import SILENCE_RMS, AudioFeatures, stream_features
from avsync.io import iter_video_frames, probe
from avsync.io.audio import describe_audio_stream, iter_audio_blocks
from avsync.models.registry import DEFAULT_METHOD, SyncInput, SyncMethod, create_model, needs_neural
from avsync.timing import DEFAULT_MAX_OFFSET_FRAMES, DRIFT_WINDOW_S, frames_to_ms
from avsync.types import DriftPoint, SyncResult, TrackResult

MIN_TRACK_FRAMES: int = 12
"""A track shorter than this (about half a second) is not scored."""

N_NULL: int = 12
"""Number of circular displacements used to estimate the null distribution of the peak."""

CONFIDENCE_THRESHOLD: float = 3.0
"""Confidence at or above which a result is called reliable (measured: docs/BENCHMARKS.md)."""

IN_SYNC_TOLERANCE_FRAMES: int = 1
"""|offset_frames| at or below this counts as in sync."""

ANALYSIS_MAX_SIDE: int = 640
"""Frames are downscaled to this longest side before landmarks (speed; lips stay >20 px)."""

SEGMENT_S: float = 60.0
"""Tracks longer than this are scored in segments whose curves are averaged (length-weighted),
so the memory of scoring does not grow with duration."""


@dataclass
class CurveScore:
    shifts_frames: np.ndarray
    scores: np.ndarray
    offset_frames: int
    confidence: float


def shifts_for(max_offset_frames: int) -> np.ndarray:
    return np.arange(-max_offset_frames, max_offset_frames + 1)


def segment_bounds(n_frames: int, fps: float, segment_s: float = SEGMENT_S) -> list[tuple[int, int]]:
    """[start, stop) frame ranges of about ``segment_s``; a short tail joins the last segment."""
    size = max(MIN_TRACK_FRAMES, int(round(segment_s * fps)))
    bounds = [(a, min(a + size, n_frames)) for a in range(0, n_frames, size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < size // 2:
        bounds[-2:] = [(bounds[-2][0], bounds[-1][1])]
    return bounds


def curve(method: SyncMethod, inp: SyncInput, shifts: np.ndarray) -> np.ndarray:
    """The method's scores over ``shifts``; long tracks averaged over segments."""
    bounds = segment_bounds(inp.n_frames, inp.fps)
    if len(bounds) == 1:
        return np.asarray(method.score(inp, shifts), dtype=np.float64)
    total = sum((b - a) * np.asarray(method.score(inp.window(a, b), shifts), np.float64)
                for a, b in bounds)
    return total / inp.n_frames


NULL_GUARD_FRAMES: int = 5
"""A null displacement stays this far from every candidate alignment, where the track allows."""


def null_displacements(n_frames: int, max_shift: int, n_null: int) -> np.ndarray:
    """Circular displacements for the null: never within max_shift + guard of the alignment.

    Falls back to 1/4..3/4 of the track when it is too short for the guard.
    """
    lo, hi = max_shift + NULL_GUARD_FRAMES, n_frames - max_shift - NULL_GUARD_FRAMES
    if hi - lo < n_null:
        lo, hi = n_frames // 4, 3 * n_frames // 4
    return np.linspace(lo, hi, n_null).astype(int)


def score_input(method: SyncMethod, inp: SyncInput, shifts: np.ndarray,
                n_null: int = N_NULL) -> CurveScore:
    """Curve over shifts, its best shift, and the peak's standing against a null.

    The null: the same visual signals circularly displaced (see null_displacements) so they face
    unrelated audio of the same file; the confidence is (peak - mean null peak) / std.
    """
    scores = curve(method, inp, shifts)
    best = int(np.argmax(scores))
    rolls = null_displacements(inp.n_frames, int(np.max(np.abs(shifts))), n_null)
    null_peaks = np.array([np.max(curve(method, inp.rolled(int(r)), shifts)) for r in rolls])
    spread = max(float(null_peaks.std()), 1e-3 * max(abs(float(null_peaks.mean())), 1e-6))
    confidence = float((scores[best] - null_peaks.mean()) / spread)
    return CurveScore(shifts, scores, int(shifts[best]), confidence)


def drift_points(method: SyncMethod, inp: SyncInput, shifts: np.ndarray,
                 window_s: float = DRIFT_WINDOW_S) -> list[DriftPoint]:
    """Offset in consecutive windows of ``window_s`` so drift over time is visible."""
    win = max(MIN_TRACK_FRAMES, int(round(window_s * inp.fps)))
    if inp.n_frames < 2 * win:
        return []
    points = []
    for start in range(0, inp.n_frames - win + 1, win):
        sub = inp.window(start, start + win)
        cs = score_input(method, sub, shifts, n_null=4)
        points.append(DriftPoint(float(sub.frame_times_s[0]), float(sub.frame_times_s[-1]),
                                 cs.offset_frames, frames_to_ms(cs.offset_frames, inp.fps),
                                 round(cs.confidence, 3)))
    return points


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
                  clock: dict | None = None, face_backend: str = "mediapipe",
                  keep_crops: bool = False, rgb_crop_size: int = 0) -> VisualAnalysis:
    """Decode + landmarks + tracks (the expensive, method-independent part).

    keep_crops: also keep per-frame mouth crops and lip points in the tracks (training data);
    rgb_crop_size: with keep_crops, also RGB mouth crops of that side (generation data).
    """
    clock = clock if clock is not None else {"decode": 0.0}
    clock.setdefault("decode", 0.0)
    t0 = time.perf_counter()
    landmarker = create_landmarker(face_backend, max_faces=max_faces)
    try:
        frames = _timed(iter(iter_video_frames(path, max_side=ANALYSIS_MAX_SIDE)), clock)
        analysis = analyse_frames(frames, landmarker, on_frame, keep_crops=keep_crops,
                                  rgb_crop_size=rgb_crop_size)
    finally:
        landmarker.close()
    clock["face"] = time.perf_counter() - t0 - clock["decode"]
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


def neural_input(track: Track, audio: AudioFeatures, fps: float):
    """The track as a NeuralInput (mouth crops, lips, blendshapes, log-mel), or None when the
    analysis kept no crops or the audio features carry no log-mel."""
    if not track.mouth or audio.logmel is None:
        return None
    from avsync.face.landmarks import BLENDSHAPE_NAMES
    from avsync.face.mouth import SIGNAL_NAMES
    from avsync.models.neural import NeuralInput

    b0 = SIGNAL_NAMES.index(BLENDSHAPE_NAMES[0])
    from avsync.face.rows import rows_array

    return NeuralInput(fps, np.asarray(track.time_s, np.float64), rows_array(track.mouth),
                       rows_array(track.lips).astype(np.float32),
                       track.signal_matrix()[:, b0: b0 + len(BLENDSHAPE_NAMES)], audio.logmel,
                       audio.start_s, np.asarray(track.valid, bool))


def track_input(track: Track, audio: AudioFeatures, fps: float) -> SyncInput:
    return SyncInput(fps, np.asarray(track.time_s, np.float64), track.signal_matrix(), audio,
                     neural_input(track, audio, fps))


def synchronise(analysis: VisualAnalysis, audio: AudioFeatures, fps: float, method: SyncMethod,
                max_offset_frames: int = DEFAULT_MAX_OFFSET_FRAMES, drift: bool = True,
                n_null: int = N_NULL) -> tuple[list[TrackResult], CurveScore]:
    """Score every long-enough track; combine the speaking tracks into one curve.

    n_null: circular displacements behind each track's confidence (fewer: faster, noisier)."""
    shifts = shifts_for(max_offset_frames)
    tracks = [t for t in analysis.tracks if t.n_frames >= MIN_TRACK_FRAMES]
    if not tracks:
        if not analysis.tracks:
            raise NoFaceError("no face was found in the video")
        raise NoFaceError(f"no face stays in view for {MIN_TRACK_FRAMES} frames or more")
    results, curves = [], []
    for track in tracks:
        inp = track_input(track, audio, fps)
        cs = score_input(method, inp, shifts, n_null)
        curves.append((cs, track.n_frames))
        results.append(TrackResult(
            track.track_id, track.shot, track.start_s, track.end_s, track.n_frames,
            cs.offset_frames, frames_to_ms(cs.offset_frames, fps), round(cs.confidence, 3),
            speaking=False, drift=drift_points(method, inp, shifts) if drift else []))
    # Speaking tracks: confident ones; if none is, the single most confident track.
    speaking = [i for i, (cs, _) in enumerate(curves) if cs.confidence >= CONFIDENCE_THRESHOLD]
    if not speaking:
        speaking = [int(np.argmax([cs.confidence for cs, _ in curves]))]
    for i in speaking:
        results[i].speaking = True
    weights = np.array([curves[i][1] for i in speaking], dtype=np.float64)
    combined = sum(w * curves[i][0].scores for w, i in zip(weights, speaking, strict=True)) / weights.sum()
    best = int(np.argmax(combined))
    conf = float(np.average([curves[i][0].confidence for i in speaking], weights=weights))
    return results, CurveScore(shifts, combined, int(shifts[best]), conf)


def detect(path: str | Path, method: str | SyncMethod = DEFAULT_METHOD,
           max_offset_frames: int = DEFAULT_MAX_OFFSET_FRAMES, max_faces: int = 4,
           drift: bool = True, on_frame: Callable[[int], None] | None = None,
           face_backend: str = "mediapipe", audio_stream: int | None = None) -> SyncResult:
    """Measure the lip-sync offset of one video file (see SyncResult for the sign).

    audio_stream: which audio stream to use (0 = first; None = the default one)."""
    if max_offset_frames < 1:
        raise AvsyncError("--max-offset-frames must be at least 1")
    model = create_model(method) if isinstance(method, str) else method
    info = probe(path)
    if not info.has_video:
        raise AvsyncError(f"{path}: the file has no video stream")
    if not info.has_audio:
        raise AvsyncError(f"{path}: the file has no audio stream")
    stream = describe_audio_stream(path, audio_stream)
    clock: dict[str, float] = {"decode": 0.0}
    t0 = time.perf_counter()
    audio = analyse_audio(path, audio_stream, logmel=needs_neural(model))
    clock["audio"] = time.perf_counter() - t0
    analysis = analyse_video(path, max_faces=max_faces, on_frame=on_frame, clock=clock,
                             face_backend=face_backend, keep_crops=needs_neural(model))
    if analysis.n_frames < MIN_TRACK_FRAMES:
        raise AvsyncError(f"{path}: the video has {analysis.n_frames} frame(s); "
                          f"at least {MIN_TRACK_FRAMES} are needed")
    fps = info.fps if info.fps and info.fps > 0 else _fps_from_times(analysis.frame_times_s)
    t1 = time.perf_counter()
    tracks, cs = synchronise(analysis, audio, fps, model, max_offset_frames, drift)
    clock["scoring"] = time.perf_counter() - t1
    return SyncResult(
        path=str(path), method=model.name, fps=round(float(fps), 4),
        duration_s=round(float(info.duration_s), 3), offset_frames=cs.offset_frames,
        offset_ms=round(frames_to_ms(cs.offset_frames, fps), 1),
        confidence=round(cs.confidence, 3),
        in_sync=abs(cs.offset_frames) <= IN_SYNC_TOLERANCE_FRAMES,
        reliable=cs.confidence >= CONFIDENCE_THRESHOLD, tracks=tracks,
        curve={"offset_frames": [int(s) for s in cs.shifts_frames],
               "score": [round(float(x), 5) for x in cs.scores]},
        timings_s={k: round(v, 3) for k, v in clock.items()}, audio_stream=asdict(stream))


def _fps_from_times(times: np.ndarray) -> float:
    if len(times) < 2 or times[-1] <= times[0]:
        return 25.0
    return (len(times) - 1) / float(times[-1] - times[0])
