"""Every registered method on synthetic inputs with a planted offset; score_input; synchronise."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import butter, sosfiltfilt

from avsync.errors import AvsyncError, NoFaceError
from avsync.face.mouth import SIGNAL_NAMES
from avsync.face.tracks import Track, VisualAnalysis
from avsync.features import AUDIO_NAMES, AudioFeatures
from avsync.inference import (
    CONFIDENCE_THRESHOLD,
    MIN_TRACK_FRAMES,
    score_input,
    shifts_for,
    synchronise,
)
from avsync.models import DEFAULT_METHOD, SyncInput, available_models, create_model
from avsync.timing import AUDIO_HOP_S, frames_to_ms

FPS = 25.0
T = 150  # frames (6 s)
HOPS_PER_FRAME = int(round(1 / (FPS * AUDIO_HOP_S)))  # 4 audio hops per video frame
MARGIN = 80  # hops
SHIFTS = shifts_for(15)
FOLLOWING = ("band_1000_3000", "log_energy", "speech_energy")
MODEL_NAMES = [m.name for m in available_models() if m.kind == "classical"]
"""Methods that score the per-frame signals (trained ones: tests/test_trained_methods.py)."""


def smooth_hops(n_hops: int, seed: int) -> np.ndarray:
    """Band-limited (1-5 Hz) noise on the 10 ms audio grid, unit variance."""
    white = np.random.default_rng(seed).standard_normal(n_hops + 400)
    sos = butter(4, [1.0, 5.0], btype="band", fs=1 / AUDIO_HOP_S, output="sos")
    x = sosfiltfilt(sos, white)[200:-200]
    return (x - x.mean()) / x.std()


def synthetic_pair(k0: int, seed: int = 0, noise: float = 0.05):
    """(frame_times, visual (T, S), audio features) with the audio LATE by k0 frames.

    A smooth signal s on the 10 ms grid; the visual signals are s at the frame times, the
    audio columns FOLLOWING are s delayed by k0 frames (k0 * 4 hops); other audio columns noise.
    """
    rng = np.random.default_rng(10_000 + seed)
    n_hops = T * HOPS_PER_FRAME
    s = smooth_hops(n_hops + 2 * MARGIN, seed)  # s[MARGIN + j] is the value at time j * 10 ms
    frame_times = np.arange(T) / FPS
    v = s[MARGIN + np.arange(T) * HOPS_PER_FRAME]
    visual = (v[:, None] + noise * rng.standard_normal((T, len(SIGNAL_NAMES)))).astype(np.float32)
    values = rng.standard_normal((n_hops, len(AUDIO_NAMES))).astype(np.float32)
    delayed = s[MARGIN + np.arange(n_hops) - k0 * HOPS_PER_FRAME]  # a(t) = v(t - k0 / fps)
    for name in FOLLOWING:
        values[:, AUDIO_NAMES.index(name)] = delayed + noise * rng.standard_normal(n_hops)
    audio = AudioFeatures(times_s=np.arange(n_hops) * AUDIO_HOP_S, values=values)
    return frame_times, visual, audio


def random_audio(seed: int) -> AudioFeatures:
    n_hops = T * HOPS_PER_FRAME
    values = np.random.default_rng(seed).standard_normal((n_hops, len(AUDIO_NAMES)))
    for name in FOLLOWING:  # smooth but unrelated
        values[:, AUDIO_NAMES.index(name)] = smooth_hops(n_hops, seed + 500)
    return AudioFeatures(times_s=np.arange(n_hops) * AUDIO_HOP_S, values=values.astype(np.float32))


def make_input(k0: int, seed: int = 0) -> SyncInput:
    times, visual, audio = synthetic_pair(k0, seed)
    return SyncInput(FPS, times, visual, audio)


def test_registry_lists_the_classical_methods() -> None:
    assert {"avcorr", "qmi"} <= set(MODEL_NAMES)
    assert DEFAULT_METHOD in {m.name for m in available_models()}
    assert MODEL_NAMES == sorted(MODEL_NAMES)
    for info in available_models():
        assert info.kind and info.description


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_create_model(name: str) -> None:
    model = create_model(name)
    assert model.name == name
    assert callable(model.score)


def test_is_neural_name_says_what_the_built_model_needs() -> None:
    """detect forks its face analysis before building the model (avsync.forked): whether to keep
    crops comes from the name alone and must match the built model's ``needs_neural``."""
    from avsync.models.registry import is_neural_name, needs_neural

    checked = 0
    for info in available_models():
        if info.kind == "peer":
            assert not is_neural_name(info.name)  # peers score whole files their own way
            continue
        try:
            model = create_model(info.name)
        except AvsyncError:  # a trained method without shipped weights
            continue
        assert is_neural_name(info.name) == needs_neural(model), info.name
        checked += 1
    assert checked >= 8
    assert is_neural_name("some/checkpoint.safetensors")


def test_create_model_default_is_the_fusion() -> None:
    assert create_model().name == DEFAULT_METHOD == "stacked"


@pytest.mark.parametrize("bad", ["nope", "", "AVCORR", "avcorr "])
def test_unknown_model_raises(bad: str) -> None:
    with pytest.raises(AvsyncError, match="unknown method"):
        create_model(bad)


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("k0", [4, -5])
def test_score_recovers_planted_shift(name: str, k0: int) -> None:
    scores = create_model(name).score(make_input(k0), SHIFTS)
    scores = np.asarray(scores)
    assert scores.shape == (31,)
    assert np.isfinite(scores).all()
    assert abs(int(SHIFTS[int(np.argmax(scores))]) - k0) <= 1


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_score_other_seeds(name: str) -> None:
    for seed, k0 in [(1, 0), (2, 7), (3, -2)]:
        scores = np.asarray(create_model(name).score(make_input(k0, seed), SHIFTS))
        assert abs(int(SHIFTS[int(np.argmax(scores))]) - k0) <= 1, (seed, k0)


# ----------------------------------------------------------------------------- SyncInput


def test_sync_input_audio_at_reads_shifted_times() -> None:
    inp = make_input(3)
    col = AUDIO_NAMES.index("band_1000_3000")
    a = inp.audio_at(3, [col])[:, 0]
    ok = np.isfinite(a)
    assert ok[:-3].all() and not ok[-2:].any()  # audio ends 3 frames after the last read
    # audio read 3 frames later lines up with the visual signal
    assert np.corrcoef(a[ok], inp.visual[ok, 0])[0, 1] > 0.95
    assert inp.n_frames == T


def test_sync_input_window_and_rolled() -> None:
    inp = make_input(0)
    w = inp.window(10, 60)
    assert w.n_frames == 50
    np.testing.assert_array_equal(w.visual, inp.visual[10:60])
    np.testing.assert_array_equal(w.audio_at(2), inp.audio_at(2)[10:60])
    r = inp.rolled(7)
    np.testing.assert_array_equal(r.visual, np.roll(inp.visual, 7, axis=0))
    np.testing.assert_array_equal(r.frame_times_s, inp.frame_times_s)


# ----------------------------------------------------------------------------- score_input


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_score_input_matched_beats_unrelated(name: str) -> None:
    method = create_model(name)
    times, visual, audio = synthetic_pair(4, seed=0)
    matched = score_input(method, SyncInput(FPS, times, visual, audio), SHIFTS)
    unrelated = score_input(method, SyncInput(FPS, times, visual, random_audio(77)), SHIFTS)
    assert abs(matched.offset_frames - 4) <= 1
    assert matched.confidence > unrelated.confidence
    assert matched.confidence >= CONFIDENCE_THRESHOLD
    np.testing.assert_array_equal(matched.shifts_frames, SHIFTS)
    assert matched.scores.shape == (31,)


# ----------------------------------------------------------------------------- synchronise


def make_track(track_id: int, times: np.ndarray, visual: np.ndarray, x0: float) -> Track:
    n = len(times)
    return Track(track_id=track_id, shot=0, frame_index=list(range(n)),
                 time_s=[float(t) for t in times], signals=[row for row in visual],
                 boxes=[(x0, 10.0, x0 + 100.0, 110.0)] * n, last_seen=n - 1)


def two_track_analysis(k0: int, seed: int = 0) -> tuple[VisualAnalysis, AudioFeatures]:
    times, visual, audio = synthetic_pair(k0, seed)
    rng = np.random.default_rng(seed + 1)
    rand = rng.standard_normal(visual.shape).astype(np.float32)
    rand += np.float32(2.0)
    tracks = [make_track(0, times, rand, 0.0), make_track(1, times, visual, 300.0)]
    analysis = VisualAnalysis(tracks=tracks, n_frames=T, frame_times_s=times, cuts=[],
                              image_size=(640, 360))
    return analysis, audio


@pytest.mark.parametrize("k0", [4, -5])
def test_synchronise_picks_the_speaking_track(k0: int) -> None:
    analysis, audio = two_track_analysis(k0)
    results, cs = synchronise(analysis, audio, FPS, create_model("avcorr"), 15, drift=False)
    assert [r.track_id for r in results] == [0, 1]
    assert results[1].speaking
    assert not results[0].speaking
    assert results[1].offset_frames == pytest.approx(k0, abs=0.3)  # sub-frame peak of a whole shift
    assert results[1].offset_ms == pytest.approx(frames_to_ms(results[1].offset_frames, FPS), abs=2.1)
    assert cs.offset_frames == pytest.approx(k0, abs=0.3)
    assert results[1].confidence > results[0].confidence
    assert all(r.n_frames == T and r.drift == [] for r in results)


def test_synchronise_drift_points_follow_the_offset() -> None:
    analysis, audio = two_track_analysis(4)
    analysis.tracks = analysis.tracks[1:]
    results, cs = synchronise(analysis, audio, FPS, create_model("avcorr"), 15, drift=True)
    (track,) = results
    assert track.speaking and cs.offset_frames == pytest.approx(4, abs=0.3)
    assert len(track.drift) == 3  # 6 s in 2 s windows
    for p in track.drift:
        assert abs(p.offset_frames - 4) <= 1
        assert p.end_s > p.start_s


def test_synchronise_without_tracks_raises_no_face() -> None:
    times, _, audio = synthetic_pair(0)
    empty = VisualAnalysis(tracks=[], n_frames=T, frame_times_s=times, cuts=[], image_size=(64, 64))
    with pytest.raises(NoFaceError):
        synchronise(empty, audio, FPS, create_model("avcorr"), 15, drift=False)
    short_times, short_visual = times[: MIN_TRACK_FRAMES - 1], np.zeros((MIN_TRACK_FRAMES - 1, len(
        SIGNAL_NAMES)), np.float32)
    short = VisualAnalysis(tracks=[make_track(0, short_times, short_visual, 0.0)], n_frames=T,
                           frame_times_s=times, cuts=[], image_size=(64, 64))
    with pytest.raises(NoFaceError):
        synchronise(short, audio, FPS, create_model("avcorr"), 15, drift=False)
