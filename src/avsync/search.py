"""Large offsets: a coarse search over seconds, then the method's fine search around its peaks.

The normal search scores +-max_offset_frames (0.6 s at 25 fps). Muxing errors and dubbing
leave offsets of seconds. ``synchronise_wide`` runs that normal search first and then, when it
is unreliable (automatic mode) or when the caller asks for a range (``max_offset_ms``):

1. coarse: the training-free ``avcorr`` correlation of every face track over every whole-frame
   shift of the range (cheap: a few ms per shift), weighted by sqrt(audio overlap fraction)
   so that the noisier correlations of short overlaps at the range's ends do not win;
2. fine: for the best coarse peaks outside the range already covered, the normal method's
   +-max_offset_frames search with its own null and confidence, run on the audio moved by
   the peak (so the null displacements stay away from the true alignment, exactly as they do
   around 0); the offset is peak + fine offset. The most confident refined peak replaces the
   normal answer when its confidence is higher by WIDE_MARGIN and its speaking tracks hold
   MIN_WIDE_SPEAKING_S of face time (or half of it on shorter clips);
3. a wide answer's confidence then loses ``look_elsewhere``'s penalty (it was the best of
   several windows; ~1.4 for +-5 s at 25 fps), so that ">= 3: reliable" means the same for
   both searches.

Shifts where a track and the audio overlap by less than ``min_overlap_frames`` are never
scored; a file whose audio and video never overlap that much within the range is an error.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from statistics import NormalDist
from typing import TYPE_CHECKING

import numpy as np

from avsync.errors import AvsyncError
from avsync.timing import frames_to_ms, ms_to_frames
from avsync.types import TrackResult

if TYPE_CHECKING:  # the media stack loads only when a search runs (the CLI checks options first)
    from avsync.face.tracks import VisualAnalysis
    from avsync.features import AudioFeatures
    from avsync.models.registry import SyncMethod

MAX_SEARCH_MS: float = 10_000.0
"""Largest ``max_offset_ms`` accepted (the coarse stage's cost and memory grow with it)."""

AUTO_SEARCH_MS: float = 5_000.0
"""Range of the automatic wide search run when the normal search is unreliable."""

MIN_OVERLAP_S: float = 2.0
"""A shift is scored only where track and audio overlap this long (half the shorter of the two
when that is less): shorter overlaps give correlations too noisy to rank."""

N_CANDIDATES: int = 2
"""Coarse peaks refined by the fine search (each costs one normal search)."""

WIDE_MARGIN: float = 0.5
"""A refined coarse peak replaces the normal search's answer only when its confidence is higher
by this much (on 7 real clips, avcorr: 0 turned 2 right answers at +-0.4 s wrong, 0.25-0.75 none;
docs/BENCHMARKS.md, Large offsets)."""

MIN_WIDE_SPEAKING_S: float = 4.0
"""A refined coarse peak can replace the normal answer only when its speaking tracks hold this
much face time, or half the face time scored when that is less (a short clip is all one track).
The wide search tries every track at several centres: a short track among long ones that agree
with nothing else is the likeliest lucky peak (a 46-frame track of a 60 s 4K clip read +5 s at
confidence 4.0 while its 720p copy reads +0.1 at 7.5; docs/BENCHMARKS.md, "Wide search support")."""

SHIFT_CHUNK: int = 64
"""Coarse shifts scored at once (bounds the memory of the vectorised correlation)."""


@dataclass
class WideSearch:
    """What the wide search did: range_ms is the half-range searched (0: not run); coarse_peaks_ms
    the refined peaks; centre_ms the centre of the search that gave the answer; normal_offset_frames
    / normal_confidence: the normal search's answer (None when the audio does not overlap at 0);
    wide_offset_frames / wide_confidence: the most confident refined peak's (None: no peak; the
    confidence before the look-elsewhere penalty); penalty: what :func:`look_elsewhere` took off
    the answer's confidence (0 when the answer is the normal search's)."""

    range_ms: float
    coarse_peaks_ms: list[float]
    centre_ms: float
    normal_offset_frames: float | None = None
    normal_confidence: float | None = None
    wide_offset_frames: float | None = None
    wide_confidence: float | None = None
    penalty: float = 0.0


def check_max_offset_ms(max_offset_ms: float | None) -> None:
    """Raise AvsyncError unless None (automatic), 0 (off) or in (0, MAX_SEARCH_MS]."""
    if max_offset_ms is None:
        return
    if not math.isfinite(max_offset_ms) or max_offset_ms < 0 or max_offset_ms > MAX_SEARCH_MS:
        raise AvsyncError(f"--max-offset-ms must be between 0 (off) and {MAX_SEARCH_MS:.0f}, "
                          f"got {max_offset_ms:g}")


def container_offset_ms(video_start_s: float | None, audio_start_s: float | None) -> float:
    """(audio stream start - video stream start) in ms from the container; 0 when unknown."""
    if video_start_s is None or audio_start_s is None:
        return 0.0
    return round(1000.0 * (audio_start_s - video_start_s), 1)


def delayed(audio: AudioFeatures, shift_frames: int, fps: float) -> AudioFeatures:
    """The audio moved EARLIER by ``shift_frames`` on the clock: a search of shift k on it is a
    search of ``shift_frames + k`` on the original (NaN/absent outside its ends, as before)."""
    return replace(audio, times_s=audio.times_s - shift_frames / fps)


def overlap_frames(frame_times_s: np.ndarray, audio: AudioFeatures, shifts: np.ndarray,
                   fps: float) -> np.ndarray:
    """(K,) number of frames whose audio at ``t + shift / fps`` exists."""
    t = np.asarray(frame_times_s, np.float64)
    lo = np.searchsorted(t, audio.start_s - shifts / fps, side="left")
    hi = np.searchsorted(t, audio.end_s - shifts / fps, side="right")
    return np.maximum(hi - lo, 0)


def min_overlap_frames(n_frames: int, audio: AudioFeatures, fps: float) -> int:
    """Overlap required at a scored shift: MIN_OVERLAP_S, or half the shorter of track and audio."""
    audio_frames = (audio.end_s - audio.start_s) * fps
    return max(2, int(math.ceil(min(MIN_OVERLAP_S * fps, 0.5 * n_frames, 0.5 * audio_frames))))


def coarse_curve(analysis: VisualAnalysis, audio: AudioFeatures, fps: float, shifts: np.ndarray,
                 min_track_frames: int) -> np.ndarray:
    """(K,) avcorr score of the tracks over ``shifts`` (frame-count weighted), -inf where no
    track overlaps the audio enough."""
    from avsync.inference import curve
    from avsync.models.methods import CorrelationMethod
    from avsync.models.registry import SyncInput

    method = CorrelationMethod()
    total, weight = np.zeros(len(shifts)), np.zeros(len(shifts))
    for track in analysis.tracks:
        if track.n_frames < min_track_frames:
            continue
        inp = SyncInput(fps, np.asarray(track.time_s, np.float64), track.signal_matrix(), audio)
        ok = overlap_frames(inp.frame_times_s, audio, shifts, fps)
        usable = ok >= min_overlap_frames(track.n_frames, audio, fps)
        scores = np.zeros(len(shifts))
        idx = np.flatnonzero(usable)
        for i in range(0, len(idx), SHIFT_CHUNK):
            part = idx[i: i + SHIFT_CHUNK]
            scores[part] = np.nan_to_num(curve(method, inp, shifts[part]))
        frac = ok / track.n_frames
        total += np.where(usable, track.n_frames * scores * np.sqrt(frac), 0.0)
        weight += np.where(usable, track.n_frames, 0.0)
    return np.where(weight > 0, total / np.maximum(weight, 1e-9), -np.inf)


def coarse_peaks(shifts: np.ndarray, scores: np.ndarray, covered: int, n: int) -> list[int]:
    """Up to ``n`` best local maxima, at least 2 * covered + 1 apart, outside [-covered, covered].

    A peak inside the covered range counts (it suppresses its neighbours) but is not returned:
    the normal search already scored it.
    """
    finite = np.isfinite(scores)
    left = np.concatenate([[-np.inf], scores[:-1]])
    right = np.concatenate([scores[1:], [-np.inf]])
    is_max = finite & (scores >= left) & (scores >= right)
    chosen: list[int] = []
    for i in np.argsort(-np.where(is_max, scores, -np.inf)):
        if not is_max[i] or len(chosen) >= n:
            break
        s = int(shifts[i])
        if all(abs(s - c) > 2 * covered for c in chosen):
            chosen.append(s)
    return [c for c in chosen if abs(c) > covered]


def shifted_tracks(tracks: list[TrackResult], shift_frames: int, fps: float) -> list[TrackResult]:
    """Track results of a search centred on ``shift_frames`` expressed on the original clock."""
    ms = frames_to_ms(shift_frames, fps)
    return [replace(t, offset_frames=t.offset_frames + shift_frames, offset_ms=t.offset_ms + ms,
                    drift=[replace(d, offset_frames=d.offset_frames + shift_frames,
                                   offset_ms=round(d.offset_ms + ms, 1)) for d in t.drift])
            for t in tracks]


def normal_range(max_offset_frames: int, max_offset_ms: float | None, fps: float) -> int:
    """The +- whole frames of the normal search: max_offset_frames, or less when max_offset_ms
    asks for a narrower range."""
    ms = AUTO_SEARCH_MS if max_offset_ms is None else max_offset_ms
    range_frames = int(math.ceil(ms_to_frames(ms, fps)))
    return range_frames if 0 < range_frames < max_offset_frames else max_offset_frames


def synchronise_wide(analysis: VisualAnalysis, audio: AudioFeatures, fps: float,
                     method: SyncMethod, max_offset_frames: int, drift: bool = True,
                     max_offset_ms: float | None = None,
                     score_at: Callable[[list[int]], list[tuple]] | None = None):
    """``inference.synchronise`` extended to large offsets (see the module docstring).

    max_offset_ms: None = automatic (a +-AUTO_SEARCH_MS search when the normal one is
    unreliable); 0 = the normal search only; > 0 = always search +-max_offset_ms. The answer
    is the most confident refined coarse peak's when it beats the normal search's confidence by
    WIDE_MARGIN and its speaking tracks are ``supported``, else the normal one.
    score_at(centres): (tracks, CurveScore) of ``synchronise`` on the audio delayed by each centre
    (frames), all at once (``avsync.streaming`` passes its own: one decoding pass per call).
    Returns (tracks, CurveScore, WideSearch) with offsets on the original clock.
    """
    from avsync.inference import CONFIDENCE_THRESHOLD, MIN_TRACK_FRAMES, synchronise

    rescore = None  # centre -> (tracks, CurveScore) with drift, when the peaks were scored without
    if score_at is None:
        roots: dict = {}  # the tracks' visual inputs, kept across centres (inference.neural_input)

        def scored(c: int, with_drift: bool) -> tuple:
            return synchronise(analysis, delayed(audio, c, fps) if c else audio, fps, method,
                               max_offset_frames, with_drift, roots=roots)

        def score_at(centres: list[int]) -> list[tuple]:
            """Centre 0 with drift (it is usually the answer); the coarse peaks without: their
            offsets and confidences do not depend on it, and most of them lose. A winning peak
            is scored again with drift (``rescore``): in full but for the video side, which the
            kept ``roots`` let the trained models reuse."""
            return [scored(c, drift and c == 0) for c in centres]

        if drift:
            rescore = lambda c: scored(c, True)  # noqa: E731

    check_max_offset_ms(max_offset_ms)
    auto = max_offset_ms is None
    range_frames = int(math.ceil(ms_to_frames(AUTO_SEARCH_MS if auto else max_offset_ms, fps)))
    if normal_range(max_offset_frames, max_offset_ms, fps) < max_offset_frames:
        max_offset_frames, range_frames = range_frames, 0  # a narrower range: the normal search over it
    centre_shifts = np.arange(-max_offset_frames, max_offset_frames + 1)
    centre_ok = _overlaps(analysis, audio, fps, centre_shifts, MIN_TRACK_FRAMES)
    best, normal = None, (None, None)
    if centre_ok:
        tracks, cs = score_at([0])[0]
        best, normal = (0, tracks, cs), (cs.offset_frames, cs.confidence)
        if (auto and cs.confidence >= CONFIDENCE_THRESHOLD) or range_frames <= max_offset_frames:
            return tracks, cs, WideSearch(0.0, [], 0.0, *normal)
    range_frames = max(range_frames, max_offset_frames)
    shifts = np.arange(-range_frames, range_frames + 1)
    scores = coarse_curve(analysis, audio, fps, shifts, MIN_TRACK_FRAMES)
    peaks = coarse_peaks(shifts, scores, max_offset_frames, N_CANDIDATES)
    if best is None and not peaks:
        raise AvsyncError(
            f"the audio ({audio.start_s:.2f}-{audio.end_s:.2f} s) and the video "
            f"({analysis.frame_times_s[0]:.2f}-{analysis.frame_times_s[-1]:.2f} s) do not overlap "
            f"long enough at any offset within +-{frames_to_ms(range_frames, fps):.0f} ms "
            "(see --max-offset-ms)")
    wide = None
    for c, (tracks, cs) in zip(peaks, score_at(peaks) if peaks else [], strict=True):
        if wide is None or cs.confidence > wide[2].confidence:
            wide = (c, tracks, cs)
    if best is None or (wide is not None and wide[2].confidence >= best[2].confidence + WIDE_MARGIN
                        and supported(wide[1], fps)):
        best = wide
        if rescore is not None:
            best = (best[0], *rescore(best[0]))
    c, tracks, cs = best
    penalty = 0.0
    if c:
        penalty = look_elsewhere(int(np.isfinite(scores).sum()), 2 * max_offset_frames + 1)
        tracks = [replace(t, confidence=round(t.confidence - penalty, 3))
                  for t in shifted_tracks(tracks, c, fps)]
        cs = replace(cs, shifts_frames=cs.shifts_frames + c, offset_frames=cs.offset_frames + c,
                     confidence=cs.confidence - penalty)
    wide_answer = (wide[0] + wide[2].offset_frames, wide[2].confidence) if wide else (None, None)
    info = WideSearch(round(frames_to_ms(range_frames, fps), 1),
                      [round(frames_to_ms(p, fps), 1) for p in peaks], round(frames_to_ms(c, fps), 1),
                      *normal, *wide_answer, round(penalty, 3))
    return tracks, cs, info


def look_elsewhere(n_shifts: int, window: int) -> float:
    """What a wide answer's confidence loses for having been picked among several windows.

    A confidence is (peak - mean null peak) / null std, the nulls being peaks over one window of
    ``window`` shifts, as the normal search's peak is. The wide search looked at ``n_shifts``
    usable shifts, i.e. m = n_shifts / window such windows, and kept the best: under the null
    that best is the largest of m draws, whose mean is about Phi^-1((m - 0.375) / (m + 0.25))
    standard deviations (Blom's approximation to the expected maximum of m normals; 1.44 for
    the 251 / 31 = 8.1 windows of +-5 s at 25 fps). Subtracting it puts a wide answer on the scale of a
    normal one: 3 means as much there as here (docs/BENCHMARKS.md, "Wide search support")."""
    m = max(1.0, n_shifts / max(window, 1))
    return max(0.0, NormalDist().inv_cdf((m - 0.375) / (m + 0.25)))


def supported(tracks: list[TrackResult], fps: float) -> bool:
    """True when the speaking tracks hold MIN_WIDE_SPEAKING_S of face time, or half of the
    scored tracks' frames when that is less."""
    speaking = sum(t.n_frames for t in tracks if t.speaking)
    return speaking >= min(MIN_WIDE_SPEAKING_S * fps, 0.5 * sum(t.n_frames for t in tracks))


def _overlaps(analysis: VisualAnalysis, audio: AudioFeatures, fps: float, shifts: np.ndarray,
              min_track_frames: int) -> bool:
    """True when some long-enough track overlaps the audio enough at some of ``shifts``."""
    for track in analysis.tracks:
        if track.n_frames >= min_track_frames:
            ok = overlap_frames(np.asarray(track.time_s, np.float64), audio, shifts, fps)
            if (ok >= min_overlap_frames(track.n_frames, audio, fps)).any():
                return True
    return not any(t.n_frames >= min_track_frames for t in analysis.tracks)
