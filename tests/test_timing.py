"""Properties of the frame <-> ms <-> sample conversions and of features.shift_samples.

Sign convention: a positive shift makes the audio LATE (a click moves to a later sample).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from avsync.features import shift_samples
from avsync.timing import (
    AUDIO_HOP_SAMPLES,
    AUDIO_WIN_SAMPLES,
    SAMPLE_RATE_HZ,
    frame_count,
    frames_to_ms,
    frames_to_samples,
    ms_to_frames,
    samples_per_frame,
)

NTSC = Fraction(30000, 1001)
FPS_EXACT = [Fraction(25), NTSC]  # exact rates; the functions get float(fps)

finite = dict(allow_nan=False, allow_infinity=False)
fps_any = st.one_of(st.sampled_from([23.976, 24.0, 25.0, 29.97, 30.0, 50.0, 59.94, float(NTSC)]),
                    st.floats(min_value=1.0, max_value=240.0, **finite))


def _expected_samples(k: int, fps: Fraction, sr: int = SAMPLE_RATE_HZ) -> int:
    """round(k * sr / fps) computed exactly (no float error)."""
    return round(Fraction(k) * sr / fps)


def test_constants() -> None:
    assert SAMPLE_RATE_HZ == 16_000
    assert AUDIO_HOP_SAMPLES == 160
    assert AUDIO_WIN_SAMPLES == 640


@settings(deadline=None)
@given(frames=st.floats(min_value=-1e4, max_value=1e4, **finite), fps=fps_any)
def test_frames_ms_round_trip(frames: float, fps: float) -> None:
    ms = frames_to_ms(frames, fps)
    assert ms_to_frames(ms, fps) == pytest.approx(frames, rel=1e-9, abs=1e-9)


@settings(deadline=None)
@given(ms=st.floats(min_value=-1e6, max_value=1e6, **finite), fps=fps_any)
def test_ms_frames_round_trip(ms: float, fps: float) -> None:
    assert frames_to_ms(ms_to_frames(ms, fps), fps) == pytest.approx(ms, rel=1e-9, abs=1e-9)


@settings(deadline=None)
@given(k=st.integers(-10_000, 10_000), fps=fps_any)
def test_ms_sign_and_scale(k: int, fps: float) -> None:
    """One frame is 1000/fps ms; the sign is kept (late stays late)."""
    ms = frames_to_ms(k, fps)
    assert ms == pytest.approx(1000.0 * k / fps)
    assert np.sign(ms) == np.sign(k)


def test_frames_to_ms_known_values() -> None:
    assert frames_to_ms(1, 25) == 40.0
    assert frames_to_ms(-6, 25) == -240.0
    assert ms_to_frames(160, 25) == 4.0
    assert frames_to_ms(1, float(NTSC)) == pytest.approx(1001 / 30)


@pytest.mark.parametrize("fps", FPS_EXACT, ids=["25", "30000/1001"])
@settings(deadline=None)
@given(k=st.integers(-100_000, 100_000))
def test_frames_to_samples_matches_exact_rounding(fps: Fraction, k: int) -> None:
    assert frames_to_samples(k, float(fps)) == _expected_samples(k, fps)


def test_frames_to_samples_known_values() -> None:
    assert frames_to_samples(1, 25.0) == 640
    assert frames_to_samples(-3, 25.0) == -1920
    assert frames_to_samples(1, float(NTSC)) == 534  # 533.87 samples per NTSC frame
    assert frames_to_samples(15, float(NTSC)) == 8008  # exactly 8008
    assert samples_per_frame(25.0) == 640.0


@pytest.mark.parametrize("bad_fps", [0.0, -25.0, float("nan")])
def test_samples_per_frame_rejects_bad_fps(bad_fps: float) -> None:
    with pytest.raises(ValueError):
        samples_per_frame(bad_fps)


@settings(deadline=None)
@given(duration=st.floats(min_value=0, max_value=1e4, **finite), fps=fps_any)
def test_frame_count_fits(duration: float, fps: float) -> None:
    n = frame_count(duration, fps)
    assert n >= 0
    assert n / fps <= duration + 1e-5
    assert (n + 1) / fps > duration - 1e-5


# ----------------------------------------------------------------------------- shift_samples


def _click(n: int, at: int) -> np.ndarray:
    x = np.zeros(n, np.float32)
    x[at] = 1.0
    return x


@st.composite
def click_case(draw):
    n = draw(st.integers(50, 6000))
    at = draw(st.integers(0, n - 1))
    fps = draw(st.sampled_from(FPS_EXACT))
    return n, at, fps


@settings(deadline=None, max_examples=200)
@given(case=click_case(), k=st.integers(-20, 20))
@example(case=(4000, 3000, Fraction(25)), k=4)  # late
@example(case=(4000, 3000, Fraction(25)), k=-4)  # early
@example(case=(640, 0, Fraction(25)), k=1)  # exactly one frame longer than the signal
def test_shift_samples_moves_click(case, k: int) -> None:
    n, at, fps = case
    d = _expected_samples(k, fps)
    x = _click(n, at)
    y = shift_samples(x, k, float(fps))
    assert y.shape == x.shape
    assert y.dtype == x.dtype
    if 0 <= at + d < n:
        assert np.flatnonzero(y).tolist() == [at + d]
        # positive k = audio late = the click is heard later
        if k > 0:
            assert np.flatnonzero(y)[0] > at
        elif k < 0:
            assert np.flatnonzero(y)[0] < at
    else:
        assert not y.any()


@settings(deadline=None, max_examples=100)
@given(n=st.integers(1, 3000), k=st.integers(1, 40), fps=st.sampled_from(FPS_EXACT))
def test_shift_samples_late_beyond_length_is_silence(n: int, k: int, fps: Fraction) -> None:
    if _expected_samples(k, fps) < n:
        k = -(-n * fps // SAMPLE_RATE_HZ) + 1  # enough frames to push everything out
    x = np.ones(n, np.float32)
    y = shift_samples(x, int(k), float(fps))
    assert y.shape == (n,)
    assert not y.any()


@settings(deadline=None, max_examples=50)
@given(n=st.integers(1, 3000), extra=st.integers(1, 40), fps=st.sampled_from(FPS_EXACT))
@example(n=1000, extra=1, fps=Fraction(25))  # k=-2: n=-1280, out[:-280] vs samples[1280:]
@example(n=2135, extra=1, fps=Fraction(30000, 1001))  # 4 frames = 2135.4 samples: not beyond
def test_shift_samples_early_beyond_length_is_silence(n: int, extra: int, fps: Fraction) -> None:
    # k frames early with round(k * 16000 / fps) > n: every sample leaves the signal
    k = -int(n * fps // SAMPLE_RATE_HZ + extra)
    while -_expected_samples(k, fps) <= n:  # floor(n * fps / sr) + 1 frames can round to n
        k -= 1
    assert -_expected_samples(k, fps) > n
    x = np.ones(n, np.float32)
    y = shift_samples(x, k, float(fps))
    assert y.shape == (n,)
    assert not y.any()


def test_shift_samples_early_exactly_length_is_silence() -> None:
    """-len(samples) exactly is handled (the boundary case just before the bug above)."""
    x = np.ones(640, np.float32)
    y = shift_samples(x, -1, 25.0)
    assert y.shape == (640,) and not y.any()


@settings(deadline=None)
@given(k=st.integers(-20, 20), fps=st.sampled_from(FPS_EXACT))
def test_shift_samples_keeps_content_in_order(k: int, fps: Fraction) -> None:
    x = np.arange(1, 15001, dtype=np.float32)  # longer than 20 frames
    y = shift_samples(x, k, float(fps))
    d = _expected_samples(k, fps)
    if d >= 0:
        assert not y[:d].any()
        np.testing.assert_array_equal(y[d:], x[: len(x) - d])
    else:
        assert not y[len(x) + d:].any()
        np.testing.assert_array_equal(y[: len(x) + d], x[-d:])


def test_shift_samples_does_not_modify_input() -> None:
    x = _click(4000, 2000)
    before = x.copy()
    shift_samples(x, 3, 25.0)
    shift_samples(x, -3, 25.0)
    np.testing.assert_array_equal(x, before)


@settings(deadline=None, max_examples=200)
@given(n_frames=st.integers(12, 5000), max_shift=st.integers(1, 30), n_null=st.integers(1, 16))
def test_null_displacements_stay_away_from_alignment(n_frames: int, max_shift: int,
                                                     n_null: int) -> None:
    from avsync.inference import NULL_GUARD_FRAMES, null_displacements

    rolls = null_displacements(n_frames, max_shift, n_null)
    assert len(rolls) == n_null
    assert ((rolls >= 0) & (rolls < n_frames)).all()
    guard = max_shift + NULL_GUARD_FRAMES
    if n_frames - 2 * guard >= n_null:  # long enough: no displacement near any candidate
        circular = np.minimum(rolls, n_frames - rolls)
        assert (circular >= guard).all()
