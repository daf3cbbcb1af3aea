"""Segment-local scoring: a track's curve, null and drift as sums of per-segment evidence.

A face track longer than one segment (``segment_frames``: about ``inference.SEGMENT_S``, a whole
number of drift windows) is cut into segments of that many frames (a tail shorter than half a
segment joins the last one: ``inference.segment_bounds``). Each segment is scored as an
INDEPENDENT input (its own lip statistics, lip flow and model caches; the audio features stay the
whole file's), so a long file can be decoded, scored and dropped one segment at a time
(``avsync.streaming``) and gives the same answer as the in-memory pipeline (``synchronise``).

What is exact and what changed (issue 12, item 6):

- A track of one segment (every track of a clip shorter than 1.5 segments, 90 s at 25 fps) is
  scored exactly as before: the method's curve of the whole track, ``N_NULL`` circular
  displacements of the whole track, 2 s drift windows with 4 displacements each.
- A longer track: its curve is the frame-weighted mean of its segments' curves, as before
  (``sum_s n_s * curve_s / n``), but each segment is now its own input (before: windows of the
  whole track, sharing the track's lip statistics and lip flow). The null is drawn PER SEGMENT:
  displacement j of the track is displacement j of each segment (``null_displacements`` of the
  segment's length), and its curve the same frame-weighted mean; the confidence is the peak
  against those null peaks as before. Before, the whole track was displaced (which needed the
  whole track in memory). Drift points are the segments' (the same 2 s windows, since a segment
  is a whole number of windows).
- What a past segment leaves behind: (K,) curve sums, (N_NULL, K) null sums and its drift
  points; no per-frame data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from avsync.models.registry import SyncInput, SyncMethod
from avsync.timing import DRIFT_WINDOW_S, frames_to_ms
from avsync.types import DriftPoint, TrackResult


def segment_frames(fps: float) -> int:
    """Frames per segment: about SEGMENT_S, rounded to a whole number of drift windows."""
    from avsync.inference import MIN_TRACK_FRAMES, SEGMENT_S

    win = max(MIN_TRACK_FRAMES, int(round(DRIFT_WINDOW_S * fps)))
    return win * max(2, int(round(SEGMENT_S / DRIFT_WINDOW_S)))


def segment_input(inp: SyncInput, start: int, stop: int) -> SyncInput:
    """Frames [start, stop) of ``inp`` as an independent input (not a window of it: its own lip
    statistics, lip flow and cache root). The whole input when it is [0, n)."""
    if start == 0 and stop == inp.n_frames:
        return inp
    neural = None
    if inp.neural is not None:
        from avsync.models.neural import NeuralInput

        n = inp.neural
        cut = (lambda a: None if a is None else a[start:stop])  # noqa: E731
        neural = NeuralInput(n.fps, n.frame_times_s[start:stop], cut(n.mouth), cut(n.lips),
                             cut(n.blend), n.logmel, n.audio_start_s, cut(n.valid))
    return SyncInput(inp.fps, inp.frame_times_s[start:stop], inp.visual[start:stop], inp.audio, neural)


@dataclass
class SegmentScore:
    """One segment's evidence: scores (K,), null_scores (n_null, K), its drift points."""

    n_frames: int
    scores: np.ndarray
    null_scores: np.ndarray
    drift: list[DriftPoint]


@dataclass(frozen=True, eq=False)
class CurveRequest:
    """One input to score, with the circular displacements of its null: a method answers it
    with a (1 + len(rolls), K) table, the input's curve then one curve per displacement."""

    inp: SyncInput
    rolls: np.ndarray


def null_scores(method: SyncMethod, req: CurveRequest, shifts: np.ndarray) -> np.ndarray:
    """(R, K) float64: ``method.score`` of each displacement of the request's input (batched when
    the method has ``score_rolls(inp, rolls, shifts) -> (R, K)``, methods.CorrelationMethod)."""
    if hasattr(method, "score_rolls"):
        nulls = np.asarray(method.score_rolls(req.inp, req.rolls, shifts), np.float64)
    else:
        nulls = np.array([np.asarray(method.score(req.inp.rolled(int(r)), shifts), np.float64)
                          for r in req.rolls])
    return nulls.reshape(len(req.rolls), len(shifts))


def request_scores(method: SyncMethod, req: CurveRequest, shifts: np.ndarray) -> np.ndarray:
    """(1 + R, K) float64: ``method.score`` of the input, then :func:`null_scores`."""
    scores = np.asarray(method.score(req.inp, shifts), dtype=np.float64)
    return np.vstack([scores[None], null_scores(method, req, shifts)])


def score_requests(method: SyncMethod, requests: list[CurveRequest], shifts: np.ndarray
                   ) -> list[np.ndarray]:
    """Each request's (1 + R, K) table (:func:`request_scores`), in order. A method with
    ``score_requests`` answers the whole list itself (models.fusion: each member runs the list
    on a thread of its own, no wait between requests)."""
    fn = getattr(method, "score_requests", None)
    if callable(fn):
        return fn(requests, shifts)
    return [request_scores(method, r, shifts) for r in requests]


def score_segment(method: SyncMethod, seg: SyncInput, shifts: np.ndarray, n_null: int,
                  drift: bool) -> SegmentScore:
    """The method's curve on one segment, on its ``n_null`` circular displacements, and the
    segment's drift points (:func:`drift_windows`) when ``drift``: all asked of the method at once
    (:func:`score_requests`)."""
    from avsync.inference import null_displacements

    rolls = null_displacements(seg.n_frames, int(np.max(np.abs(shifts))), n_null)
    windows = drift_windows(seg) if drift else []
    tables = score_requests(method, [CurveRequest(seg, rolls), *drift_requests(seg, windows, shifts)],
                            shifts)
    return SegmentScore(seg.n_frames, tables[0][0], tables[0][1:],
                        [drift_point(seg, w, t, shifts) for w, t in zip(windows, tables[1:], strict=True)])


def curve_of(scores: np.ndarray, nulls: np.ndarray, shifts: np.ndarray):
    """A CurveScore from a (K,) curve and its (R, K) null curves: sub-frame peak and confidence
    ``(peak - mean null peak) / std of the null peaks``."""
    from avsync.inference import CurveScore, peak_frames

    best = int(np.argmax(scores))
    null_peaks = np.max(nulls, axis=1)
    spread = max(float(null_peaks.std()), 1e-3 * max(abs(float(null_peaks.mean())), 1e-6))
    confidence = float((scores[best] - null_peaks.mean()) / spread)
    return CurveScore(shifts, scores, peak_frames(shifts, scores), confidence)


DRIFT_N_NULL: int = 4
"""Circular displacements behind each drift point's confidence."""


def drift_windows(inp: SyncInput, window_s: float = DRIFT_WINDOW_S) -> list[tuple[int, int]]:
    """Frames [start, stop) of the consecutive drift windows of ``window_s`` (none when the
    input holds fewer than two), so drift over time is visible."""
    from avsync.inference import MIN_TRACK_FRAMES

    win = max(MIN_TRACK_FRAMES, int(round(window_s * inp.fps)))
    if inp.n_frames < 2 * win:
        return []
    return [(start, start + win) for start in range(0, inp.n_frames - win + 1, win)]


def drift_requests(inp: SyncInput, windows: list[tuple[int, int]], shifts: np.ndarray
                   ) -> list[CurveRequest]:
    """One CurveRequest per drift window: the window and its DRIFT_N_NULL displacements."""
    from avsync.inference import null_displacements

    max_shift = int(np.max(np.abs(shifts)))
    return [CurveRequest(inp.window(a, b), null_displacements(b - a, max_shift, DRIFT_N_NULL))
            for a, b in windows]


def drift_point(inp: SyncInput, window: tuple[int, int], table: np.ndarray, shifts: np.ndarray
                ) -> DriftPoint:
    """The DriftPoint of frames [start, stop) of ``inp`` from their (1 + R, K) request table."""
    from avsync.models.calibration import round_frames

    cs = curve_of(table[0], table[1:], shifts)
    t = inp.frame_times_s
    return DriftPoint(float(t[window[0]]), float(t[window[1] - 1]), round_frames(cs.offset_frames),
                      round(frames_to_ms(cs.offset_frames, inp.fps), 1), round(cs.confidence, 3))


@dataclass
class TrackEvidence:
    """The running evidence of one track: frame-weighted sums over its scored segments."""

    track_id: int = 0
    shot: int = 0
    start_s: float = float("nan")
    end_s: float = float("nan")
    n_frames: int = 0
    parts: list[SegmentScore] = field(default_factory=list)
    _scores: np.ndarray | float = 0.0
    _nulls: np.ndarray | float = 0.0
    drift: list[DriftPoint] = field(default_factory=list)

    def add(self, part: SegmentScore, start_s: float, end_s: float) -> None:
        """Add one segment (segments in time order); its per-frame data is not kept."""
        if not self.parts and self.n_frames == 0:
            self.start_s = start_s
            self.parts = [part]  # one segment: its exact curves are the track's
        else:
            if self.parts:  # a second segment: from now on, weighted sums
                first = self.parts[0]
                self._scores, self._nulls = first.n_frames * first.scores, first.n_frames * first.null_scores
                self.parts = []
            self._scores = self._scores + part.n_frames * part.scores
            self._nulls = self._nulls + part.n_frames * part.null_scores
        self.end_s = end_s
        self.n_frames += part.n_frames
        self.drift.extend(part.drift)

    def curve_score(self, shifts: np.ndarray):
        """The track's CurveScore: curve, sub-frame peak and confidence against the null peaks
        (:func:`curve_of`)."""
        if self.parts:
            return curve_of(self.parts[0].scores, self.parts[0].null_scores, shifts)
        return curve_of(self._scores / self.n_frames, self._nulls / self.n_frames, shifts)


def drop_audio_caches(method: SyncMethod) -> None:
    """Empty the trained scorers' audio-tower memo (``NeuralSyncMethod._audio_cache``, keyed by
    audio row: it would grow with every minute of audio scored). Answer-preserving: the entries
    are recomputed when asked again (tested). The method, or each member of a fusion."""
    for m in getattr(method, "members", None) or [method]:
        cache = getattr(m, "_audio_cache", None)
        if cache is not None:
            cache.clear()


def evidence_of(method: SyncMethod, inp: SyncInput, shifts: np.ndarray, n_null: int,
                drift: bool) -> TrackEvidence:
    """A whole in-memory track's evidence, segment by segment."""
    from avsync.inference import segment_bounds

    ev = TrackEvidence()
    for a, b in segment_bounds(inp.n_frames, inp.fps):
        seg = segment_input(inp, a, b)
        ev.add(score_segment(method, seg, shifts, n_null, drift),
               float(seg.frame_times_s[0]), float(seg.frame_times_s[-1]))
    return ev


def combine_tracks(evidence: list[TrackEvidence], shifts: np.ndarray, fps: float):
    """Per-track results and the clip's CurveScore from the tracks' evidence.

    Speaking tracks: those with confidence >= CONFIDENCE_THRESHOLD, else the most confident one;
    the clip's curve is their frame-weighted mean, its confidence their frame-weighted mean."""
    from avsync.inference import CONFIDENCE_THRESHOLD, CurveScore, peak_frames
    from avsync.models.calibration import round_frames

    curves = [ev.curve_score(shifts) for ev in evidence]
    results = [TrackResult(ev.track_id, ev.shot, ev.start_s, ev.end_s, ev.n_frames,
                           round_frames(cs.offset_frames), round(frames_to_ms(cs.offset_frames, fps), 1),
                           round(cs.confidence, 3), speaking=False, drift=ev.drift)
               for ev, cs in zip(evidence, curves, strict=True)]
    speaking = [i for i, cs in enumerate(curves) if cs.confidence >= CONFIDENCE_THRESHOLD]
    if not speaking:
        speaking = [int(np.argmax([cs.confidence for cs in curves]))]
    for i in speaking:
        results[i].speaking = True
    weights = np.array([evidence[i].n_frames for i in speaking], dtype=np.float64)
    combined = sum(w * curves[i].scores for w, i in zip(weights, speaking, strict=True)) / weights.sum()
    conf = float(np.average([curves[i].confidence for i in speaking], weights=weights))
    return results, CurveScore(shifts, combined, peak_frames(shifts, combined), conf)
