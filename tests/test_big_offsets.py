"""Large offsets (avsync.search): coarse +-5 s search, fine search around its peaks, container offsets.

Known answers at +-1, +-2, +-4 s on a real 10 s, 25 fps clip (EDTalk mouth_source, HDTF-style):
the audio moved by re-encoding its samples (``avsync fix --offset-ms`` / shift_audio) and by a
container start time (ffmpeg ``-itsoffset``, stream copy; skipped without ffmpeg). The fine method
is avcorr here (seconds, not minutes); benchmarks/big_offsets.py shows the default.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from avsync.errors import AvsyncError
from avsync.features import AudioFeatures
from avsync.inference import CONFIDENCE_THRESHOLD, analyse_audio, analyse_video, detect
from avsync.io import shift_audio
from avsync.models.registry import create_model
from avsync.search import (
    MAX_SEARCH_MS,
    check_max_offset_ms,
    coarse_peaks,
    container_offset_ms,
    delayed,
    look_elsewhere,
    overlap_frames,
    supported,
    synchronise_wide,
)

CLIP = "EDTalk/muxed/mouth_source+wav.mkv"
FPS = 25.0
PLANTED_MS = (1000, -1000, 2000, -2000, 4000, -4000)
FRAME_MS = 1000 / FPS


def test_check_max_offset_ms():
    for ok in (None, 0, 1, 2500.5, MAX_SEARCH_MS):
        check_max_offset_ms(ok)
    for bad in (MAX_SEARCH_MS + 1, -1, math.nan, math.inf):
        with pytest.raises(AvsyncError, match="--max-offset-ms"):
            check_max_offset_ms(bad)


def test_container_offset_ms():
    assert container_offset_ms(0.0, 2.0) == 2000.0
    assert container_offset_ms(2.0, 0.0) == -2000.0
    assert container_offset_ms(0.5, 0.5) == 0.0
    assert container_offset_ms(None, 1.0) == 0.0


def _audio(n_hops: int = 1000, start_s: float = 0.0) -> AudioFeatures:
    rng = np.random.default_rng(0)
    times = start_s + 0.01 * np.arange(n_hops)
    return AudioFeatures(times, rng.normal(size=(n_hops, 3)).astype(np.float32), ("a", "b", "c"))


def test_delayed_audio_reads_shift_plus_centre():
    audio = _audio()
    frames = np.arange(100) / FPS
    for centre, k in ((50, 3), (-20, -7), (0, 5)):
        moved = delayed(audio, centre, FPS)
        np.testing.assert_array_equal(moved.at(frames + k / FPS),
                                      audio.at(frames + (centre + k) / FPS))
    assert np.isnan(delayed(audio, 300, FPS).at(frames)[-1]).all()  # beyond the end: NaN as before


def test_overlap_frames_counts_frames_with_audio():
    audio = _audio(n_hops=401)  # 0..4 s
    frames = np.arange(100) / FPS  # 0..3.96 s
    got = overlap_frames(frames, audio, np.array([0, 25, -25, 100, 125]), FPS)
    assert list(got) == [100, 76, 75, 1, 0]


def test_coarse_peaks_skip_covered_and_suppress_neighbours():
    shifts = np.arange(-100, 101)
    scores = np.zeros(len(shifts))
    for s, v in ((0, 1.0), (50, 0.9), (53, 0.85), (-80, 0.5), (20, 0.4)):
        scores[s + 100] = v
    assert coarse_peaks(shifts, scores, covered=15, n=3) == [50, -80]
    assert coarse_peaks(shifts, scores, covered=15, n=2) == [50]
    scores[:] = -np.inf
    assert coarse_peaks(shifts, scores, covered=15, n=2) == []


def _track(n_frames: int, confidence: float, speaking: bool, offset: float = 0.0):
    from avsync.types import TrackResult

    return TrackResult(0, 0, 0.0, n_frames / FPS, n_frames, offset, offset * FRAME_MS, confidence, speaking)


def test_look_elsewhere_is_the_expected_best_of_the_windows_searched():
    """Blom's expected maximum of m standard normals, m = shifts / window; none for one window."""
    assert look_elsewhere(31, 31) == 0.0 and look_elsewhere(10, 31) == 0.0
    rng = np.random.default_rng(0)
    for m in (2, 8, 30):
        simulated = rng.standard_normal((20000, m)).max(axis=1).mean()
        assert look_elsewhere(31 * m, 31) == pytest.approx(simulated, abs=0.03)
    assert look_elsewhere(251, 31) == pytest.approx(1.44, abs=0.01)  # +-5 s at 25 fps


def test_supported_needs_seconds_of_speaking_face_or_half_of_a_short_clip():
    assert supported([_track(40, 4.5, True), _track(600, 0.2, False)], FPS) is False  # 1.6 s of 25.6
    assert supported([_track(100, 4.5, True), _track(600, 0.2, False)], FPS) is True  # 4 s
    assert supported([_track(40, 4.5, True)], FPS) is True  # a 1.6 s clip: all of it
    assert supported([_track(40, 4.5, True), _track(50, 0.2, False)], FPS) is False  # < half


@pytest.mark.parametrize("short_frames,moved", [(40, False), (150, True)])
def test_a_wide_peak_resting_on_a_short_track_does_not_replace_the_normal_answer(
        monkeypatch, short_frames, moved):
    """The normal search (one long track at confidence 2) against a +100-frame peak where only a
    short track reads 4.5: the peak wins only when that track holds MIN_WIDE_SPEAKING_S of face."""
    from types import SimpleNamespace

    from avsync import search
    from avsync.inference import CurveScore

    grid = np.arange(-15, 16)
    monkeypatch.setattr(search, "_overlaps", lambda *a: True)
    monkeypatch.setattr(search, "coarse_curve",
                        lambda a, au, fps, shifts, m: -np.abs(shifts - 100.0))
    answers = {0: ([_track(600, 2.0, True, 0.3)], CurveScore(grid, np.zeros(31), 0.3, 2.0)),
               100: ([_track(600, 0.1, False), _track(short_frames, 4.5, True, 1.0)],
                     CurveScore(grid, np.zeros(31), 1.0, 4.5))}
    audio = SimpleNamespace(start_s=0.0, end_s=30.0)
    tracks, cs, info = synchronise_wide(SimpleNamespace(tracks=[]), audio, FPS, None, 15,
                                        score_at=lambda centres: [answers[c] for c in centres])
    assert info.coarse_peaks_ms == [4000.0] and info.wide_confidence == 4.5  # the peak was refined
    if moved:  # 251 shifts scored, 31 a window: the answer pays the look-elsewhere penalty
        assert info.penalty == pytest.approx(look_elsewhere(251, 31), abs=1e-3)
        assert (cs.offset_frames, cs.confidence) == (101.0, pytest.approx(4.5 - info.penalty, abs=1e-3))
        assert [t.confidence for t in tracks] == [pytest.approx(0.1 - info.penalty, abs=1e-3),
                                                  pytest.approx(4.5 - info.penalty, abs=1e-3)]
    else:
        assert (cs.offset_frames, cs.confidence, info.penalty) == (0.3, 2.0, 0.0)


@pytest.fixture(scope="module")
def clip_analysis(realclip):
    path = realclip(CLIP)
    return path, analyse_video(path)


@pytest.fixture(scope="module")
def avcorr():
    return create_model("avcorr")


@pytest.mark.parametrize("planted_ms", PLANTED_MS)
def test_known_answer_shifted_samples(clip_analysis, avcorr, tmp_path, planted_ms):
    """Audio samples moved (video stream copied, so the clip's face analysis is reused)."""
    path, analysis = clip_analysis
    moved = shift_audio(path, tmp_path / "moved.mkv", -planted_ms)  # moved later = audio late
    audio = analyse_audio(moved)
    tracks, cs, info = synchronise_wide(analysis, audio, FPS, avcorr, 15, drift=False)
    assert abs(cs.offset_frames * FRAME_MS - planted_ms) <= FRAME_MS, (cs, info)
    assert info.range_ms == 5000.0 and info.centre_ms != 0.0  # the wide search gave the answer
    assert cs.shifts_frames[0] <= cs.offset_frames <= cs.shifts_frames[-1]
    assert any(t.speaking and t.offset_frames == pytest.approx(cs.offset_frames, abs=0.05) for t in tracks)
    # the answer's confidence is the refined peak's less the look-elsewhere penalty (~8 windows)
    assert 1.0 < info.penalty < 2.0
    assert cs.confidence == pytest.approx(info.wide_confidence - info.penalty, abs=1e-3)
    if abs(planted_ms) <= 1000:
        assert cs.confidence >= CONFIDENCE_THRESHOLD
    off = synchronise_wide(analysis, audio, FPS, avcorr, 15, drift=False, max_offset_ms=0)[1]
    assert abs(off.offset_frames) <= 15 and off.confidence < cs.confidence


def _itsoffset(src: Path, out: Path, offset_s: float) -> Path:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), "-itsoffset", f"{offset_s:g}",
                    "-i", str(src), "-map", "0:v", "-map", "1:a", "-c", "copy", str(out)],
                   check=True, capture_output=True, timeout=60)
    return out


@pytest.mark.parametrize("planted_ms", PLANTED_MS)
def test_known_answer_container_offset(realclip, tmp_path, planted_ms):
    """Audio stream start delayed/advanced in the container (stream copy): detected end to end,
    and reported as container_offset_ms."""
    src = realclip(CLIP)
    path = _itsoffset(src, tmp_path / "its.mkv", planted_ms / 1000)
    result = detect(path, method="avcorr", drift=False)
    assert abs(result.offset_ms - planted_ms) <= FRAME_MS, result.offset_ms
    assert abs(result.container_offset_ms - planted_ms) <= 1.0 and result.search_range_ms == 5000.0
    assert result.to_dict()["container_offset_ms"] == result.container_offset_ms


def test_short_clip_with_a_large_container_offset(example_clip, tmp_path):
    """3 s clip, audio stream 4 s after the video: no overlap at all within +-15 frames. Off: a
    clear error; the default wide search reaches it."""
    path = _itsoffset(example_clip, tmp_path / "late4.mkv", 4.0)
    with pytest.raises(AvsyncError, match="do not overlap"):
        detect(path, method="avcorr", drift=False, max_offset_ms=0)
    result = detect(path, method="avcorr", drift=False)
    assert result.offset_frames >= 90 and result.container_offset_ms > 3900


def test_short_clip_with_its_audio_moved_out(example_clip, tmp_path):
    """3 s clip whose samples moved 4 s later: nothing left to hear, a one-line error."""
    moved = shift_audio(example_clip, tmp_path / "gone.mp4", -4000)
    with pytest.raises(AvsyncError, match="silent"):
        detect(moved, method="avcorr", drift=False)


def test_cli_max_offset_ms(realclip, tmp_path):
    from avsync.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["detect", "--max-offset-ms", "20000", str(tmp_path / "none.mp4")])
    assert res.exit_code != 0 and "--max-offset-ms" in res.stderr and "Traceback" not in res.stderr
    assert len([ln for ln in res.stderr.splitlines() if ln.strip()]) == 1
    late = tmp_path / "late.mkv"
    res = runner.invoke(app, ["fix", str(realclip(CLIP)), "-o", str(late), "--offset-ms", "-2000"])
    assert res.exit_code == 0, res.stderr
    res = runner.invoke(app, ["detect", "--method", "avcorr", "--max-offset-ms", "3000", "--json",
                              "--no-progress", str(late)])
    assert res.exit_code == 0, res.stderr
    d = json.loads(res.stdout.strip().splitlines()[-1])
    assert abs(d["offset_ms"] - 2000) <= FRAME_MS and d["container_offset_ms"] == 0.0
    assert d["search_range_ms"] == 3000.0
    assert d["curve"]["offset_frames"][0] > 15  # the curve is the fine one, around the peak


def test_summary_mentions_container_offset_and_wide_search():
    from avsync.cli import _summary
    from avsync.types import SyncResult

    def result(container_ms: float, range_ms: float) -> SyncResult:
        return SyncResult("x.mkv", "avcorr", 25.0, 10.0, 50, 2000.0, 7.8, False, True, [], {},
                          container_offset_ms=container_ms, search_range_ms=range_ms)

    text = _summary(result(-2000.0, 5000.0))
    assert "2000 ms before the video stream" in text and "searched +-5000 ms" in text
    assert "after the video stream" in _summary(result(1500.0, 0.0))
    plain = _summary(result(0.0, 0.0))
    assert "container" not in plain and "searched" not in plain


def _drift_everywhere(analysis, audio, method):
    """The wide search's scoring before the candidates skipped their drift windows: every
    centre scored in full (passing ``score_at`` turns the skip off)."""
    from avsync.inference import synchronise

    return lambda centres: [synchronise(analysis, delayed(audio, c, FPS) if c else audio, FPS,
                                        method, 15, True) for c in centres]


@pytest.mark.slow
@pytest.mark.parametrize(("method_name", "planted_ms"), [("avcorr", 2000), ("avcorr", 0),
                                                         ("stacked", -2000)])
def test_candidates_without_drift_give_the_same_answer(realclip, tmp_path, method_name, planted_ms):
    """Coarse peaks are refined without drift windows and only a winner is scored again with
    them (on the tracks' kept video inputs): the same tracks, drift points, curve and search
    record as scoring every centre in full, whether a peak wins (planted offset) or not."""
    path = realclip(CLIP)
    keep = method_name != "avcorr"
    analysis = analyse_video(path, keep_crops=keep)
    moved = shift_audio(path, tmp_path / "moved.mkv", -planted_ms) if planted_ms else path
    audio = analyse_audio(moved)
    got = synchronise_wide(analysis, audio, FPS, create_model(method_name), 15, True, 5000.0)
    ref = synchronise_wide(analysis, audio, FPS, create_model(method_name), 15, True, 5000.0,
                           score_at=_drift_everywhere(analysis, audio, create_model(method_name)))
    assert got[0] == ref[0] and got[2] == ref[2]
    assert (got[1].offset_frames, got[1].confidence) == (ref[1].offset_frames, ref[1].confidence)
    np.testing.assert_array_equal(got[1].scores, ref[1].scores)
    assert any(t.drift for t in got[0])  # drift points were computed for the answer
    assert (got[2].centre_ms != 0.0) == (planted_ms != 0)  # a peak won exactly when planted
