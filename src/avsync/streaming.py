"""Long files, one segment at a time: decode, track, score and drop (issue 12, item 6).

``inference.analyse_video`` keeps every face track of the file (signals, and for the trained
methods 48 px mouth crops and lip points: ~2.5 KB per frame and face) until scoring. For files
longer than STREAM_MIN_SEGMENTS segments, ``detect`` uses :func:`stream_video` instead: the same
frames, landmarker and ``face.tracks.Tracker`` (the loop of ``face.tracks.analyse_frames``), but as
soon as a track holds enough frames for one of its segments to be final (``segment + half a
segment``: the tail rule of ``inference.segment_bounds``), that segment is scored
(``segments.score_segment``: curve, null displacements, drift) and its frames are dropped from the
track. A finished track (face lost, shot cut, end of file) scores what it still holds as its last
segment. Tracks therefore continue across segment boundaries (a track's segments are counted from
its own first frame, exactly as in the in-memory pipeline, so both give the same segments and
the same answers) and shot cuts end tracks as before.

What stays per track after the pass: its evidence (``segments.TrackEvidence``: a few curves and
the drift points) and, for the wide search (``avsync.search``), its per-frame visual signals
(19 float32 + the time: ~84 bytes per frame and face, 7.6 MB per hour). The trained scorers'
audio-tower memo is emptied after each segment (``segments.drop_audio_caches``); their tower and
output caches are per segment already (keyed by the segment's input). What still grows with the
duration is the audio: the file's features (~1.5 MB per minute with the log-mel) and each trained
scorer's prepared copy of its log-mel (~1 MB per minute), which the whole-file normalisation needs.
The wide search's fine stage needs the crops again: it runs a second streaming pass that scores
all its candidate audio centres at once (``StreamScorer.score_at``).

Two cores (issue 14): the landmarks come from ``face.chunks`` (keyframe chunks of about
``CHUNK_S`` decoded and landmarked by two workers, at most two chunks ahead of the tracker: the
same frames and answers) when the file allows it, else from ``face.pipeline``.
"""

from __future__ import annotations

import copy
import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avsync.face.tracks import Track, Tracker, VisualAnalysis, track_frames
from avsync.features import AudioFeatures
from avsync.models.registry import SyncMethod, needs_neural
from avsync.segments import TrackEvidence, combine_tracks, drop_audio_caches, score_segment, segment_frames

STREAM_MIN_SEGMENTS: float = 1.5
"""Files longer than this many segments (SEGMENT_S each) are analysed by :func:`stream_video`;
shorter ones cannot hold a track of two segments, so the in-memory pipeline gives the same answer."""


def trim_heap() -> None:
    """Hand the C heap's free pages back to the system (glibc ``malloc_trim``; a no-op elsewhere).
    The audio decoding and each segment's scoring free many small blocks; without this, the
    fragments stay resident (measured: 575 -> 436 MB after an hour's audio features)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def wanted(duration_s: float, fps: float) -> bool:
    """True when a file of ``duration_s`` at ``fps`` (> 0) is analysed segment by segment."""
    from avsync.face.frame_rate import analysis_rate

    fps = analysis_rate(fps) or fps if fps > 0 else 0.0
    return fps > 0 and duration_s * fps > STREAM_MIN_SEGMENTS * segment_frames(fps)


@dataclass
class _Held:
    """Per-track state of the pass: evidence per audio centre, first frame, compact signals."""

    first_frame: int
    evidence: list[TrackEvidence]
    signals: list[np.ndarray] = field(default_factory=list)
    times: list[np.ndarray] = field(default_factory=list)


class SegmentScorer:
    """Receives the Tracker's tracks after every frame and scores their final segments.

    centres: audio delays (frames) scored at once, each with its own method instance (the
    trained methods cache the prepared audio of one audio clock).
    """

    def __init__(self, method: SyncMethod, audio: AudioFeatures, fps: float, shifts: np.ndarray,
                 n_null: int, drift: bool, centres: list[int], clock: dict) -> None:
        from avsync.search import delayed

        self.fps, self.shifts, self.n_null, self.drift, self.clock = fps, shifts, n_null, drift, clock
        self.size = segment_frames(fps)
        self.audios = [delayed(audio, c, fps) if c else audio for c in centres]
        self.methods = [method] + [copy.deepcopy(method) for _ in centres[1:]]
        self.held: dict[int, _Held] = {}
        self.done: list[_Held] = []
        self.times = array("d")
        self.n_track_frames = 0  # all tracks, long enough or not (the small-face fallback's rule)

    def after_frame(self, tracker: Tracker, time_s: float) -> None:
        self.times.append(time_s)
        for track in tracker.finished:
            self._flush(track)
        tracker.finished.clear()
        for track in tracker.active:
            if track.n_frames >= self.size + self.size // 2:
                self._emit(track, self.size)

    def close(self, tracker: Tracker) -> None:
        """Score what the tracks still hold (their last segments), the fusions' members side by
        side (``models.threads.members_side_by_side``): the face analysis is over, its cores free."""
        from contextlib import ExitStack

        from avsync.cpu import usable_threads
        from avsync.models.threads import members_side_by_side

        with ExitStack() as stack:
            for method in self.methods:
                stack.enter_context(members_side_by_side(method, usable_threads()))
            for track in tracker.close():
                self._flush(track)

    def _flush(self, track: Track) -> None:
        from avsync.inference import MIN_TRACK_FRAMES

        if track.track_id not in self.held and track.n_frames < MIN_TRACK_FRAMES:
            self.n_track_frames += track.n_frames
            return
        self.done.append(self._emit(track, track.n_frames))
        del self.held[track.track_id]

    def _emit(self, track: Track, k: int) -> _Held:
        """Score the first ``k`` frames the track holds as one segment and drop them from it."""
        from avsync.inference import track_input

        t0 = time.perf_counter()
        state = self.held.get(track.track_id)
        if state is None:
            state = self.held[track.track_id] = _Held(
                track.frame_index[0], [TrackEvidence(track.track_id, track.shot) for _ in self.audios])
        self.n_track_frames += k
        times = np.array([self.times[i] for i in track.frame_index[:k]], np.float64)  # gap frames too
        signals = track.signal_matrix()[:k]  # gaps interpolated between held neighbours
        seg = Track(track.track_id, track.shot, frame_index=track.frame_index[:k], time_s=list(times),
                    signals=list(signals), valid=track.valid[:k])
        if len(track.mouth):
            from avsync.face.rows import rows_array

            mouth, lips = rows_array(track.mouth), rows_array(track.lips)
            seg.mouth, seg.lips = list(mouth[:k]), list(lips[:k])
        for ev, audio, method in zip(state.evidence, self.audios, self.methods, strict=True):
            part = score_segment(method, track_input(seg, audio, self.fps), self.shifts, self.n_null,
                                 self.drift)
            ev.add(part, float(times[0]), float(times[-1]))
            drop_audio_caches(method)  # a long file's audio rows would pile up in it
        state.signals.append(signals)
        state.times.append(times)
        _drop_head(track, k)
        trim_heap()
        self.clock["segment_scoring"] = self.clock.get("segment_scoring", 0.0) + time.perf_counter() - t0
        return state

    def evidence(self, centre: int) -> list[TrackEvidence]:
        """The tracks' evidence for the centre of that index, in the in-memory pipeline's order."""
        done = sorted(self.done, key=lambda s: (s.first_frame, s.evidence[0].track_id))
        return [s.evidence[centre] for s in done]

    def light_tracks(self) -> list[Track]:
        """The scored tracks with their signals only (for the wide search's coarse stage)."""
        out = []
        for s in sorted(self.done, key=lambda s: (s.first_frame, s.evidence[0].track_id)):
            t = Track(s.evidence[0].track_id, s.evidence[0].shot)
            t.time_s, t.signals = np.concatenate(s.times), np.concatenate(s.signals)
            t.frame_index = range(s.first_frame, s.first_frame + len(t.time_s))
            out.append(t)
        return out


def _drop_head(track: Track, k: int) -> None:
    """Forget the first ``k`` frames of a track that the Tracker keeps extending."""
    from avsync.face.rows import RowStore

    track.frame_index, track.time_s = track.frame_index[k:], track.time_s[k:]
    track.signals, track.boxes, track.valid = track.signals[k:], track.boxes[k:], track.valid[k:]
    for name in ("mouth", "lips"):
        rows = getattr(track, name)
        if len(rows):
            store = RowStore(rows.shape, rows.dtype)
            for row in rows.array()[k:]:
                store.append(row)
            setattr(track, name, store)


def _pass(detected: Iterator, scorer: SegmentScorer, keep_crops: bool,
          on_frame: Callable[[int], None] | None) -> int:
    """face.tracks.track_frames over ``(frame, faces)`` pairs (face.pipeline), with the scorer
    called after every frame; the number of frames."""
    tracker = Tracker(keep_crops=keep_crops)
    n = 0
    for i, frame, _, _ in track_frames(detected, tracker, on_frame):
        scorer.after_frame(tracker, frame.time_s)
        n = i + 1
    scorer.close(tracker)
    return n


@dataclass
class StreamScorer:
    """Runs streaming passes over one file; ``score_at(centres)`` is the wide search's hook."""

    path: Path
    method: SyncMethod
    audio: AudioFeatures
    fps: float
    rate_fps: float | None
    max_offset_frames: int
    drift: bool
    n_null: int
    max_faces: int
    face_backend: str
    rotate: str | int | None
    on_frame: Callable[[int], None] | None
    clock: dict
    stride: int = 1  # detect --fast: landmarks on every stride-th frame, two landmarkers (face.pipeline)
    small_faces: bool = False

    def run(self, centres: list[int]) -> tuple[SegmentScorer, int]:
        """One pass (the small-face pass when the first found nothing); (scorer, frames)."""
        from avsync.analysis import ANALYSIS_MAX_SIDE
        from avsync.face.chunks import (
            CHUNK_S,
            chunked_detections,
            plan_chunks,
            seam_keyframes_s,
            with_seam_resets,
        )
        from avsync.face.landmarks import create_landmarker
        from avsync.face.pipeline import FAST_LANDMARKERS, detected_frames
        from avsync.face.small_faces import SEARCH_MAX_SIDE, RegionLandmarker
        from avsync.inference import shifts_for

        def one(max_side: int, make: Callable, stride: int = 1) -> tuple[SegmentScorer, int]:
            from avsync.analysis import frame_stream

            scorer = SegmentScorer(self.method, self.audio, self.fps, shifts_for(self.max_offset_frames),
                                   self.n_null, self.drift, centres, self.clock)
            plan = None
            if max_side == ANALYSIS_MAX_SIDE and self.rate_fps is None and stride == 1:
                seams = seam_keyframes_s(self.path, CHUNK_S)  # chunks or not: trackers restart there
                make = with_seam_resets(make, seams)
                plan = plan_chunks(self.path, self.rotate, CHUNK_S, seams_s=seams)
            if plan is not None:  # keyframe chunks on two cores (face.chunks); same answers
                with chunked_detections(self.path, plan[0], plan[1], make, max_side, plan[2],
                                        needs_neural(self.method)) as detected:
                    n = _pass(detected, scorer, needs_neural(self.method), self.on_frame)
                return scorer, n
            frames = frame_stream(self.path, max_side, self.rotate, self.rate_fps, self.clock)
            with detected_frames(frames, make, clock=self.clock, stride=stride,  # face.pipeline
                                 n_landmarkers=1 if stride == 1 else FAST_LANDMARKERS) as detected:
                n = _pass(detected, scorer, needs_neural(self.method), self.on_frame)
            return scorer, n

        first = None
        if not self.small_faces:
            first = one(ANALYSIS_MAX_SIDE,
                        lambda: create_landmarker(self.face_backend, max_faces=self.max_faces), self.stride)
            if first[0].done:
                return first
            self.small_faces = True  # nothing usable at 640 px: small faces (face.small_faces)
        second = one(SEARCH_MAX_SIDE, lambda: RegionLandmarker(
            lambda: create_landmarker(self.face_backend, max_faces=1), max_faces=self.max_faces))
        if first is not None and second[0].n_track_frames <= first[0].n_track_frames:
            return first
        return second

    def score_at(self, centres: list[int]) -> list[tuple]:
        """(tracks, CurveScore) of each audio centre (frames) in one streaming pass."""
        scorer, _ = self.run(centres)
        return [self.combine(scorer, i) for i in range(len(centres))]

    def combine(self, scorer: SegmentScorer, i: int) -> tuple:
        from avsync.errors import NoFaceError
        from avsync.inference import MIN_TRACK_FRAMES, shifts_for

        evidence = scorer.evidence(i)
        if not evidence:
            if not scorer.n_track_frames:
                raise NoFaceError("no face was found in the video")
            raise NoFaceError(f"no face stays in view for {MIN_TRACK_FRAMES} frames or more")
        return combine_tracks(evidence, shifts_for(self.max_offset_frames), self.fps)


def stream_video(path: str | Path, audio: AudioFeatures, fps: float, method: SyncMethod,
                 max_offset_frames: int, max_offset_ms: float | None, drift: bool, n_null: int,
                 max_faces: int, face_backend: str, rotate: str | int | None,
                 on_frame: Callable[[int], None] | None,
                 clock: dict, stride: int = 1) -> tuple[VisualAnalysis, Callable[[list[int]], list[tuple]]]:
    """The first streaming pass (audio centre 0). Returns a light VisualAnalysis (tracks with
    signals only, for ``search.synchronise_wide``) and its ``score_at`` hook, whose centre [0]
    is the pass just made and whose other centres run a new pass. fps: the file's (> 0).
    stride > 1 (``detect --fast``): landmarks on every stride-th frame, interpolated between, by
    two landmarkers in turn (face.pipeline, as ``inference.analyse_video``; no keyframe chunks)."""
    from avsync.face.frame_rate import analysis_rate
    from avsync.search import normal_range

    t0 = time.perf_counter()
    trim_heap()  # what decoding the whole audio track left behind
    rate_fps = analysis_rate(fps)
    fps = rate_fps or fps  # as detect: 50/60 fps files are analysed on the 25 fps grid
    runner = StreamScorer(Path(path), method, audio, fps, rate_fps,
                          normal_range(max_offset_frames, max_offset_ms, fps), drift, n_null, max_faces,
                          face_backend, rotate, on_frame, clock, stride)
    scorer, n = runner.run([0])
    analysis = VisualAnalysis(scorer.light_tracks(), n, np.asarray(scorer.times, np.float64), [],
                              (0, 0), rate_fps)

    def score_at(centres: list[int]) -> list[tuple]:
        if list(centres) == [0]:
            return [runner.combine(scorer, 0)]
        return runner.score_at(list(centres))

    clock["face"] = (time.perf_counter() - t0 - clock.get("decode", 0.0)
                     - clock.get("segment_scoring", 0.0))
    return analysis, score_at
