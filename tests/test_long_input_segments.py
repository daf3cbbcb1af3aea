"""Segment-local scoring (avsync.segments) and segment-by-segment analysis (avsync.streaming).

- one-segment tracks score exactly as the whole-track maths did before (reference re-implemented
  here, computed in the test run: no frozen numbers, so retrained weights do not break it);
- several segments: the curve is the frame-weighted mean of independent segment curves, the null
  is drawn per segment, and no input longer than one segment is ever scored;
- a streamed long file == the in-memory pipeline with the same segments, on two real clips
  joined by a shot cut, with tracks crossing segment boundaries, including the wide search's
  second pass.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from avsync import inference, segments, streaming
from avsync.inference import N_NULL, null_displacements, score_input, shifts_for, synchronise
from avsync.models.calibration import round_frames
from avsync.models.registry import SyncInput
from avsync.timing import DRIFT_WINDOW_S

SHIFTS = shifts_for(15)


def _old_score(method, inp: SyncInput, shifts: np.ndarray, n_null: int) -> tuple[np.ndarray, float]:
    """The pre-segment maths of a one-segment track: the whole track's curve and the peak against
    ``n_null`` circular displacements of the whole track."""
    scores = np.asarray(method.score(inp, shifts), np.float64)
    rolls = null_displacements(inp.n_frames, int(np.max(np.abs(shifts))), n_null)
    peaks = np.array([np.max(method.score(inp.rolled(int(r)), shifts)) for r in rolls])
    spread = max(float(peaks.std()), 1e-3 * max(abs(float(peaks.mean())), 1e-6))
    return scores, float((scores[int(np.argmax(scores))] - peaks.mean()) / spread)


def test_one_segment_track_is_scored_exactly_as_before(realclip, one_thread) -> None:
    """Real clip (7 s, default method): curve, confidence and drift bit-identical to the
    whole-track maths."""
    from avsync.inference import analyse_audio, analyse_video, track_input
    from avsync.models.registry import DEFAULT_METHOD, create_model

    path = realclip("lip-reading-deeplearning/data/sample_video.mp4")
    analysis = analyse_video(path, keep_crops=True)
    audio = analyse_audio(path)
    track = max(analysis.tracks, key=lambda t: t.n_frames)
    fps = inference.probe(path).fps
    inp = track_input(track, audio, fps)
    assert len(inference.segment_bounds(inp.n_frames, fps)) == 1
    cs = score_input(create_model(DEFAULT_METHOD), inp, SHIFTS)
    ref = create_model(DEFAULT_METHOD)  # the old order of calls: the track, then its windows
    want_scores, want_conf = _old_score(ref, inp, SHIFTS, N_NULL)
    assert np.array_equal(cs.scores, want_scores) and cs.confidence == want_conf
    # drift: 2 s windows of the whole track, each against 4 displacements of itself
    results, _ = synchronise(analysis, audio, fps, create_model(DEFAULT_METHOD))
    got = next(r for r in results if r.track_id == track.track_id)
    assert got.confidence == round(want_conf, 3)
    win = int(round(DRIFT_WINDOW_S * fps))
    assert len(got.drift) == inp.n_frames // win >= 2
    for k, p in enumerate(got.drift):
        w = inp.window(k * win, (k + 1) * win)
        scores, conf = _old_score(ref, w, SHIFTS, 4)
        assert round(conf, 3) == p.confidence and p.start_s == float(w.frame_times_s[0])
        assert p.offset_frames == round_frames(inference.peak_frames(SHIFTS, scores))


class _Recorder:
    """A fake method: a deterministic curve of the visual signal; records input lengths."""

    name = "recorder"

    def __init__(self) -> None:
        self.lengths: list[int] = []

    def score(self, inp: SyncInput, shifts: np.ndarray) -> np.ndarray:
        self.lengths.append(inp.n_frames)
        v = inp.visual[:, 0].astype(np.float64)
        return np.array([np.mean(v[: len(v) - 3] * v[3:]) * np.cos(s / 7.0) + 0.01 * s for s in shifts])


def test_several_segments_combine_frame_weighted_with_per_segment_nulls(monkeypatch) -> None:
    from avsync.features import AudioFeatures

    monkeypatch.setattr(inference, "SEGMENT_S", 4.0)  # 100-frame segments at 25 fps
    fps, n = 25.0, 330  # 100 + 100 + 130 (a 30-frame tail joins the last segment)
    rng = np.random.default_rng(3)
    audio = AudioFeatures(np.arange(0, 20, 0.01), rng.normal(size=(2000, 3)).astype(np.float32))
    inp = SyncInput(fps, np.arange(n) / fps, rng.normal(size=(n, 4)).astype(np.float32), audio)
    bounds = inference.segment_bounds(n, fps)
    assert bounds == [(0, 100), (100, 200), (200, 330)]
    method = _Recorder()
    ev = segments.evidence_of(method, inp, SHIFTS, N_NULL, drift=True)
    assert max(method.lengths) == 130  # nothing longer than a segment was ever scored
    cs = ev.curve_score(SHIFTS)
    ref = _Recorder()
    parts = [(b - a, ref.score(inp.window(a, b), SHIFTS)) for a, b in bounds]
    np.testing.assert_allclose(cs.scores, sum(w * c for w, c in parts) / n, rtol=1e-12)
    null_peaks = []
    for j in range(N_NULL):
        total = 0.0
        for a, b in bounds:
            r = int(null_displacements(b - a, 15, N_NULL)[j])
            total = total + (b - a) * ref.score(inp.window(a, b).rolled(r), SHIFTS)
        null_peaks.append(np.max(total / n))
    null_peaks = np.array(null_peaks)
    want = (cs.scores.max() - null_peaks.mean()) / null_peaks.std()
    assert cs.confidence == pytest.approx(want, rel=1e-9)
    # drift: every segment's 2 s windows, in time order, covering the track to its last window
    assert [round(p.start_s * fps) for p in ev.drift] == [0, 50, 100, 150, 200, 250]
    assert ev.n_frames == n and ev.start_s == 0.0 and ev.end_s == pytest.approx((n - 1) / fps)


def _two_clips_with_a_cut(a: Path, b: Path, out: Path, seconds: float) -> None:
    """``seconds`` of each clip, 256x256 25 fps, joined (a shot cut between them), 16 kHz audio."""
    part = (f"trim=0:{seconds},setpts=PTS-STARTPTS,scale=256:256,setsar=1,fps=25",
            f"atrim=0:{seconds},asetpts=PTS-STARTPTS,aresample=16000,aformat=channel_layouts=mono")
    graph = (f"[0:v]{part[0]}[v0];[0:a]{part[1]}[a0];[1:v]{part[0]}[v1];[1:a]{part[1]}[a1];"
             "[v0][a0][v1][a1]concat=n=2:v=1:a=1[v][a]")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(a), "-i", str(b), "-filter_complex", graph,
                    "-map", "[v]", "-map", "[a]", "-c:v", "libx264", "-preset", "veryfast", "-crf", "18",
                    "-c:a", "aac", str(out)], check=True)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg binary")
def test_streamed_file_equals_the_in_memory_pipeline(realclip, tmp_path: Path, monkeypatch,
                                                      one_thread) -> None:
    """Two real clips (6 s each) joined by a cut, 4 s segments: tracks cross segment boundaries
    and end at the cut. detect (streamed, never analyse_video) == analyse_video + the in-memory
    synchronise_wide, default method, with a +-2 s wide search (its second streaming pass)."""
    from avsync.inference import analyse_audio, analyse_video, detect
    from avsync.models.registry import DEFAULT_METHOD, create_model
    from avsync.search import synchronise_wide

    path = tmp_path / "cut.mp4"
    _two_clips_with_a_cut(realclip("MimicTalk/data/raw/examples/German_20s.mp4"),
                          realclip("lip-reading-deeplearning/data/sample_video.mp4"), path, 6.0)
    monkeypatch.setattr(inference, "SEGMENT_S", 2.0)  # 100-frame segments (two 2 s drift windows)
    assert segments.segment_frames(25.0) == 100 and streaming.wanted(12.0, 25.0)
    real_analyse, calls = inference.analyse_video, []
    monkeypatch.setattr(inference, "analyse_video", lambda *a, **k: calls.append(1) or real_analyse(*a, **k))
    real_pass, passes = streaming._pass, []
    monkeypatch.setattr(streaming, "_pass", lambda *a: passes.append(1) or real_pass(*a))
    got = detect(path, method=DEFAULT_METHOD, max_offset_ms=2000)
    assert not calls  # streamed
    analysis = analyse_video(path, keep_crops=True)
    assert len(analysis.cuts) >= 1 and max(t.n_frames for t in analysis.tracks) > 100
    tracks, cs, wide = synchronise_wide(analysis, analyse_audio(path), got.fps, create_model(DEFAULT_METHOD),
                                        15, True, 2000)
    assert got.search_range_ms == wide.range_ms > 0
    assert wide.coarse_peaks_ms and len(passes) == 2  # the candidates: one more streaming pass
    assert got.offset_frames == round(cs.offset_frames, 1)
    assert got.confidence == pytest.approx(cs.confidence, abs=1e-3)
    np.testing.assert_allclose(got.curve["score"], cs.scores, atol=1e-4)
    assert [(t.track_id, t.shot, t.n_frames, t.offset_frames) for t in got.tracks] == \
        [(t.track_id, t.shot, t.n_frames, t.offset_frames) for t in tracks]
    for new, ref in zip(got.tracks, tracks, strict=True):
        assert new.confidence == pytest.approx(ref.confidence, abs=1e-3)
        assert [(p.start_s, p.offset_frames) for p in new.drift] == [(p.start_s, p.offset_frames)
                                                                     for p in ref.drift]


def _old_correlation_curve(visual, audio_at, shifts, fps, pairs, transforms=("diff", "band")):
    """classical.correlation_curve as it was before the batched nulls (reference)."""
    from avsync.models.classical import _fill_nan, bandpass, bandpass_axis, derivative, pearson_columns

    v = np.nan_to_num(visual[:, [p[0] for p in pairs]].astype(np.float64))
    acols = [p[1] for p in pairs]
    a_raw, ok = _fill_nan(np.stack([audio_at(k)[:, acols] for k in shifts]).astype(np.float64))
    mask = ok & np.concatenate([np.zeros_like(ok[:, :1]), ok[:, 1:] & ok[:, :-1]], axis=1)
    rs = []
    for t in transforms:
        if t == "diff":
            d = np.diff(a_raw, axis=1)
            vt, at = derivative(v), np.concatenate([d[:, :1], d], axis=1)
        else:
            vt, at = bandpass(v, fps), bandpass_axis(a_raw, fps, axis=1)
        rs.append(pearson_columns(np.broadcast_to(vt, at.shape), at, mask))
    return np.mean(rs, axis=(0, 2))


def test_batched_null_displacements_give_the_same_numbers() -> None:
    """avcorr's score_rolls (audio side computed once for all displacements) == one call per
    displaced input == the pre-batching implementation, bit for bit; and score_segment uses it."""
    from avsync.face.mouth import SIGNAL_NAMES
    from avsync.features import AUDIO_NAMES, AudioFeatures
    from avsync.models.methods import CorrelationMethod

    rng = np.random.default_rng(5)
    fps, n = 25.0, 400
    audio = AudioFeatures(np.arange(-1, 20, 0.01),
                          rng.normal(size=(2100, len(AUDIO_NAMES))).astype(np.float32))
    visual = rng.normal(size=(n, len(SIGNAL_NAMES))).astype(np.float32)
    visual[17:20] = np.nan  # a gap
    inp = SyncInput(fps, np.arange(n) / fps + 0.3, visual, audio)
    method = CorrelationMethod()
    rolls = null_displacements(n, 15, N_NULL)
    batched = method.score_rolls(inp, rolls, SHIFTS)
    one_by_one = np.array([method.score(inp.rolled(int(r)), SHIFTS) for r in rolls])
    assert np.array_equal(batched, one_by_one)
    cols = [AUDIO_NAMES.index(a) for a in method.config.audio]
    pairs = [(SIGNAL_NAMES.index(v), 0) for v in method.config.visual]
    for r, row in zip(rolls, batched, strict=True):
        ref = _old_correlation_curve(np.roll(visual, int(r), axis=0), lambda k: inp.audio_at(k, cols),
                                     SHIFTS, fps, pairs)
        assert np.array_equal(row, ref)
    part = segments.score_segment(method, inp, SHIFTS, N_NULL, drift=False)
    assert np.array_equal(part.null_scores, batched)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg binary")
def test_streamed_file_without_a_face_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    """A long file (8 s with 4 s segments) with no face: both streaming passes (640 px, then
    the small-face search) run and detect raises NoFaceError, as the in-memory pipeline does."""
    from avsync.errors import NoFaceError
    from avsync.inference import detect

    path = tmp_path / "noface.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000", "-t", "8",
                    "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac", str(path)], check=True)
    monkeypatch.setattr(inference, "SEGMENT_S", 2.0)
    monkeypatch.setattr(inference, "analyse_video", None)  # must not be used
    real_pass, passes = streaming._pass, []
    monkeypatch.setattr(streaming, "_pass", lambda *a: passes.append(1) or real_pass(*a))
    with pytest.raises(NoFaceError, match="no face was found"):
        detect(path, method="avcorr")
    assert len(passes) == 2
