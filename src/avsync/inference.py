"""From a video file to a SyncResult: face tracks, score curves, offset, confidence, drift."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from avsync.analysis import (  # noqa: F401  (analyse_*, the constants: public here too)
    ANALYSIS_MAX_SIDE,
    MIN_TRACK_FRAMES,
    analyse_audio,
    analyse_video,
)
from avsync.errors import AvsyncError, NoFaceError
from avsync.face.landmarks import DEFAULT_BACKEND
from avsync.face.pipeline import FAST_STRIDE
from avsync.face.tracks import Track, VisualAnalysis
from avsync.features import AudioFeatures
from avsync.io import probe
from avsync.io.audio import describe_audio_stream
from avsync.io.orientation import parse_rotate
from avsync.models.calibration import refine_peak, round_frames
from avsync.models.registry import (
    DEFAULT_METHOD,
    SyncInput,
    SyncMethod,
    check_model,
    create_model,
    is_neural_name,
    needs_neural,
)
from avsync.timing import DEFAULT_MAX_OFFSET_FRAMES, frames_to_ms
from avsync.types import SyncResult, TrackResult

N_NULL: int = 12
"""Number of circular displacements used to estimate the null distribution of the peak."""

CONFIDENCE_THRESHOLD: float = 3.0
"""Confidence at or above which a result is called reliable (measured: docs/BENCHMARKS.md)."""

IN_SYNC_TOLERANCE_FRAMES: float = 1.4
"""|offset_frames| (as reported, one decimal) at or below this counts as in sync: readings that
round to at most one whole frame, the rule of the whole-frame offsets before sub-frame refinement
(so a clip one frame off that reads 1.1 is still in sync)."""

SEGMENT_S: float = 60.0
"""Tracks longer than this are scored in segments (curves and nulls frame-weighted over them,
avsync.segments), so the memory of scoring does not grow with duration; files longer than 1.5
segments are also decoded segment by segment (avsync.streaming)."""


@dataclass
class CurveScore:
    """shifts_frames (K,) whole frames, scores (K,); offset_frames: the peak refined below one
    frame (``models.calibration.refine_peak``; not rounded)."""

    shifts_frames: np.ndarray
    scores: np.ndarray
    offset_frames: float
    confidence: float


def peak_frames(shifts: np.ndarray, scores: np.ndarray) -> float:
    """The curve's sub-frame peak (frames); the first shift when no score is finite."""
    return refine_peak(shifts, scores) if np.isfinite(scores).any() else float(shifts[0])


def shifts_for(max_offset_frames: int) -> np.ndarray:
    return np.arange(-max_offset_frames, max_offset_frames + 1)


def segment_bounds(n_frames: int, fps: float) -> list[tuple[int, int]]:
    """[start, stop) frame ranges of ``segments.segment_frames`` (about SEGMENT_S, whole drift
    windows); a tail shorter than half a segment joins the last segment."""
    from avsync.segments import segment_frames

    size = segment_frames(fps)
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
    unrelated audio of the same file; the confidence is (peak - mean null peak) / std. Tracks
    longer than one segment: per-segment curves and nulls (avsync.segments says what is exact).
    """
    from avsync.segments import evidence_of

    return evidence_of(method, inp, shifts, n_null, drift=False).curve_score(shifts)


def neural_input(track: Track, audio: AudioFeatures, fps: float, roots: dict | None = None):
    """The track as a NeuralInput (mouth crops, lips, blendshapes, log-mel), or None when the
    analysis kept no crops or the audio features carry no log-mel.

    roots: track_id -> the first NeuralInput made of that track, shared by calls that score
    the same tracks against moved audio (search.synchronise_wide): later calls get that input's
    visual arrays with their own audio and it as ``root``, so a method keeps the track's video
    embeddings (and lip flow) between the calls instead of recomputing them."""
    if not track.mouth or audio.logmel is None:
        return None
    root = None if roots is None else roots.get(track.track_id)
    if root is not None:
        return replace(root, logmel=audio.logmel, audio_start_s=audio.start_s, root=root)
    from avsync.face.landmarks import BLENDSHAPE_NAMES
    from avsync.face.mouth import SIGNAL_NAMES
    from avsync.models.neural import NeuralInput

    b0 = SIGNAL_NAMES.index(BLENDSHAPE_NAMES[0])
    from avsync.face.rows import rows_array

    ninp = NeuralInput(fps, np.asarray(track.time_s, np.float64), rows_array(track.mouth),
                       rows_array(track.lips).astype(np.float32),
                       track.signal_matrix()[:, b0: b0 + len(BLENDSHAPE_NAMES)], audio.logmel,
                       audio.start_s, np.asarray(track.valid, bool))
    if roots is not None:
        roots[track.track_id] = ninp
    return ninp


def track_input(track: Track, audio: AudioFeatures, fps: float, roots: dict | None = None) -> SyncInput:
    """What a method sees of ``track`` against ``audio`` (roots: see :func:`neural_input`)."""
    return SyncInput(fps, np.asarray(track.time_s, np.float64), track.signal_matrix(), audio,
                     neural_input(track, audio, fps, roots))


def synchronise(analysis: VisualAnalysis, audio: AudioFeatures, fps: float, method: SyncMethod,
                max_offset_frames: int = DEFAULT_MAX_OFFSET_FRAMES, drift: bool = True,
                n_null: int = N_NULL, roots: dict | None = None) -> tuple[list[TrackResult], CurveScore]:
    """Score every long-enough track; combine the speaking tracks into one curve.

    n_null: circular displacements behind each track's confidence (fewer: faster, noisier);
    roots: shared by calls on the same tracks with moved audio (:func:`neural_input`)."""
    shifts = shifts_for(max_offset_frames)
    tracks = [t for t in analysis.tracks if t.n_frames >= MIN_TRACK_FRAMES]
    if not tracks:
        if not analysis.tracks:
            raise NoFaceError("no face was found in the video")
        raise NoFaceError(f"no face stays in view for {MIN_TRACK_FRAMES} frames or more")
    from avsync.segments import combine_tracks, evidence_of

    def score_tracks(m: SyncMethod, todo: list[Track]) -> list:
        out = []
        for track in todo:
            ev = evidence_of(m, track_input(track, audio, fps, roots), shifts, n_null, drift)
            ev.track_id, ev.shot = track.track_id, track.shot
            out.append(ev)
        return out

    groups = track_groups(tracks, method)
    if len(groups) == 1:  # one track (or one thread): a fusion's members side by side instead
        from avsync.cpu import usable_threads
        from avsync.models.threads import members_side_by_side

        with members_side_by_side(method, usable_threads()):
            evidence = score_tracks(method, tracks)
    else:  # each thread its own copy of the method (caches), one torch thread each
        from concurrent.futures import ThreadPoolExecutor

        from avsync.models.threads import SCORING_THREADS, torch_threads

        with torch_threads(SCORING_THREADS), ThreadPoolExecutor(
                len(groups), thread_name_prefix="avsync-scoring") as pool:
            done = [pool.submit(score_tracks, m, [tracks[i] for i in idx]) for m, idx in groups]
            by_index = {i: ev for (_, idx), fut in zip(groups, done, strict=True)
                        for i, ev in zip(idx, fut.result(), strict=True)}
        evidence = [by_index[i] for i in range(len(tracks))]
    return combine_tracks(evidence, shifts, fps)


def track_groups(tracks: list[Track], method: SyncMethod) -> list[tuple[SyncMethod, list[int]]]:
    """Tracks (indices) split among up to ``avsync.cpu.usable_threads()`` threads for scoring,
    longest first to the least-loaded thread, each thread with a copy of the method
    (``models.threads.thread_copy``: the same weights, its own caches). One group (the method
    itself, every track) when there is one track or one thread, or the method cannot be copied.

    Same answers as one after the other, up to float rounding: a copy starts with empty caches,
    so a tower output may come from a batch of another size than when tracks share a cache.
    """
    from avsync.cpu import usable_threads
    from avsync.models.threads import thread_copy

    n = min(len(tracks), usable_threads())
    copies = [method] + [thread_copy(method) for _ in range(n - 1)]
    if n < 2 or any(c is None for c in copies):
        return [(method, list(range(len(tracks))))]
    load, members = [0] * n, [[] for _ in range(n)]
    for i in sorted(range(len(tracks)), key=lambda i: -tracks[i].n_frames):
        g = load.index(min(load))
        load[g] += tracks[i].n_frames
        members[g].append(i)
    return [(c, sorted(idx)) for c, idx in zip(copies, members, strict=True) if idx]


def detect(path: str | Path, method: str | SyncMethod = DEFAULT_METHOD,
           max_offset_frames: int = DEFAULT_MAX_OFFSET_FRAMES, max_faces: int = 4,
           drift: bool = True, on_frame: Callable[[int], None] | None = None,
           face_backend: str = DEFAULT_BACKEND, max_offset_ms: float | None = None,
           rotate: str | int | None = "auto", weights: str | Path | None = None,
           s3fd_weights: str | Path | None = None, audio_stream: int | None = None,
           fast: bool = False) -> SyncResult:
    """Measure the lip-sync offset of one video file (see SyncResult for the sign).

    max_offset_ms: wide search range (avsync.search): None = +-5 s when the normal
    +-max_offset_frames search is unreliable, 0 = off, up to 10000 = always.
    rotate: "auto" (the file's display matrix, as players do) or a forced clockwise turn.
    weights / s3fd_weights: the user's files for the peer methods (avsync.peers).
    audio_stream: which audio stream to use (0 = first; None = the default one).
    fast: landmarks on every other frame (see analyse_video; a measured accuracy cost).
    on_frame(n): progress, frame n analysed; when a process's first call builds a trained
    method, the face analysis runs in a forked child meanwhile (avsync.forked) and on_frame is
    called from a thread that reads the child's progress."""
    from avsync import search, streaming

    if max_offset_frames < 1:
        raise AvsyncError("--max-offset-frames must be at least 1")
    search.check_max_offset_ms(max_offset_ms)
    parse_rotate(rotate)  # a bad value fails before any decoding
    if isinstance(method, str):  # a bad name fails at once, a bad file before the model is built
        check_model(method, weights=weights, s3fd_weights=s3fd_weights)
    info = probe(path)  # (building a trained model imports torch: ~0.75 s)
    early = _early_face_analysis(path, info, method, max_faces, on_frame, face_backend, rotate, fast)
    with early if early is not None else nullcontext():  # leaving it stops a child still running
        model = (create_model(method, weights=weights, s3fd_weights=s3fd_weights) if isinstance(method, str)
                 else method)
        if hasattr(model, "detect_file"):  # peer models score whole files at 25 fps (avsync.peers)
            if rotate != "auto" or max_offset_ms or audio_stream is not None or fast:
                raise AvsyncError(f"{model.name} takes none of --rotate, --max-offset-ms, --audio-stream, "
                                  "--fast (it follows the file's display matrix and searches "
                                  "+-max-offset-frames)")
            return model.detect_file(path, max_offset_frames=max_offset_frames, max_faces=max_faces,
                                     face_backend=face_backend, on_frame=on_frame)
        if not info.has_video:
            raise AvsyncError(f"{path}: the file has no video stream")
        if not info.has_audio:
            raise AvsyncError(f"{path}: the file has no audio stream")
        stream = describe_audio_stream(path, audio_stream)
        clock: dict[str, float] = {"decode": 0.0}
        t0 = time.perf_counter()
        audio = analyse_audio(path, audio_stream, logmel=needs_neural(model))
        clock["audio"] = time.perf_counter() - t0
        score_at = None
        if early is not None:  # started in a child before the model was built
            analysis, child_clock = early.result()
            clock.update(child_clock)
        elif streaming.wanted(info.duration_s, info.fps):  # long files: segment by segment
            analysis, score_at = streaming.stream_video(
                path, audio, info.fps, model, max_offset_frames, max_offset_ms, drift, N_NULL, max_faces,
                face_backend, rotate, on_frame, clock, FAST_STRIDE if fast else 1)
        else:
            analysis = analyse_video(path, max_faces=max_faces, on_frame=on_frame, clock=clock,
                                     face_backend=face_backend, keep_crops=needs_neural(model),
                                     rotate=rotate, fast=fast)
        if analysis.n_frames < MIN_TRACK_FRAMES:
            raise AvsyncError(f"{path}: the video has {analysis.n_frames} frame(s); "
                              f"at least {MIN_TRACK_FRAMES} are needed")
        fps = info.fps if info.fps and info.fps > 0 else _fps_from_times(analysis.frame_times_s)
        fps = analysis.rate_fps or fps  # 50/60 fps videos: frames (and offsets) of the 25 fps grid
        t1 = time.perf_counter()
        tracks, cs, wide = search.synchronise_wide(analysis, audio, fps, model, max_offset_frames, drift,
                                                max_offset_ms, score_at)
        clock["scoring"] = time.perf_counter() - t1
        return SyncResult(
            path=str(path), method=model.name, fps=round(float(fps), 4),
            duration_s=round(float(info.duration_s), 3), offset_frames=round_frames(cs.offset_frames),
            offset_ms=round(frames_to_ms(cs.offset_frames, fps), 1),
            confidence=round(cs.confidence, 3),
            in_sync=abs(round_frames(cs.offset_frames)) <= IN_SYNC_TOLERANCE_FRAMES,
            reliable=cs.confidence >= CONFIDENCE_THRESHOLD, tracks=tracks,
            curve={"offset_frames": [int(s) for s in cs.shifts_frames],
                   "score": [round(float(x), 5) for x in cs.scores]},
            timings_s={k: round(v, 3) for k, v in clock.items()},
            container_offset_ms=search.container_offset_ms(info.video_start_s, stream.start_s),
            search_range_ms=wide.range_ms, audio_stream=asdict(stream))


def _early_face_analysis(path: str | Path, info: Any, method: str | SyncMethod, max_faces: int,
                         on_frame: Callable[[int], None] | None, face_backend: str,
                         rotate: str | int | None, fast: bool) -> Any:
    """The face analysis started in a forked child (avsync.forked) when a trained method is
    still to be built (its torch import then overlaps the analysis), else None. Files with
    problems the probe shows, and long files (scored segment by segment with the model,
    avsync.streaming), are left to ``detect`` itself."""
    from avsync import streaming
    from avsync.forked import Forked, fork_wanted

    if not (isinstance(method, str) and is_neural_name(method) and info.has_video and info.has_audio
            and not streaming.wanted(info.duration_s, info.fps) and fork_wanted()):
        return None

    def analyse(progress: Callable[[int], None]) -> tuple[VisualAnalysis, dict]:
        clock: dict[str, float] = {"decode": 0.0}
        analysis = analyse_video(path, max_faces=max_faces, on_frame=progress, clock=clock,
                                 face_backend=face_backend, keep_crops=True, rotate=rotate, fast=fast)
        return analysis, clock

    return Forked(analyse, on_progress=on_frame)


def _fps_from_times(times: np.ndarray) -> float:
    if len(times) < 2 or times[-1] <= times[0]:
        return 25.0
    return (len(times) - 1) / float(times[-1] - times[0])
