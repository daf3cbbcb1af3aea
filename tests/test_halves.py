"""Issue 14 (speed): the face analysis as two halves on two cores gives the one-piece answers.

The clip: the shipped 3 s GRID example looped 8 times (24 s) and re-encoded with a keyframe
every 3 s, so it has a keyframe near its middle (the reference, ``AVSYNC_THREADS=1``, is
computed in the same run).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from avsync.face import halves, pipeline

pytest.importorskip("mediapipe")

LOOPS = 8


@pytest.fixture(scope="module")
def long_clip(example_clip, tmp_path_factory) -> Path:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    out = tmp_path_factory.mktemp("halves") / "looped.mp4"
    cmd = ["ffmpeg", "-v", "error", "-y", "-stream_loop", str(LOOPS - 1), "-i", str(example_clip),
           "-c:v", "libx264", "-g", "75", "-sc_threshold", "0", "-pix_fmt", "yuv420p",
           "-c:a", "aac", str(out)]
    subprocess.run(cmd, check=True, timeout=120)
    return out


def _analyse(path, threads: str, monkeypatch, **kw):
    from avsync.inference import analyse_video

    monkeypatch.setenv(pipeline.THREADS_ENV, threads)
    clock: dict = {}
    return analyse_video(path, keep_crops=True, clock=clock, **kw), clock


def _assert_identical(a, b) -> None:
    assert a.n_frames == b.n_frames and a.cuts == b.cuts and a.image_size == b.image_size
    assert np.array_equal(a.frame_times_s, b.frame_times_s)
    assert len(a.tracks) == len(b.tracks) >= 1
    for x, y in zip(a.tracks, b.tracks, strict=True):
        assert (x.track_id, x.shot, x.frame_index, x.valid) == (y.track_id, y.shot, y.frame_index, y.valid)
        assert np.array_equal(x.signal_matrix(), y.signal_matrix())
        assert all(np.array_equal(m, n) for m, n in zip(x.mouth, y.mouth, strict=True))
        assert all(np.array_equal(m, n, equal_nan=True) for m, n in zip(x.lips, y.lips, strict=True))


def test_seam_is_a_keyframe_near_the_middle(long_clip, example_clip):
    key = halves.seam_keyframe_s(long_clip)
    assert key is not None and abs(key - 12.0) <= 3.0 + 1e-6
    assert halves.seam_keyframe_s(example_clip) is None  # 3 s: one piece


def test_halves_give_the_one_piece_analysis(long_clip, monkeypatch):
    ref, ref_clock = _analyse(long_clip, "1", monkeypatch)
    got, clock = _analyse(long_clip, "2", monkeypatch)
    assert "halves_seam_s" not in ref_clock
    if halves.split_cores() is None:
        pytest.skip("this process may run on one core only")
    assert clock["halves_seam_s"] == halves.seam_keyframe_s(long_clip)
    _assert_identical(got, ref)
    assert ref.n_frames >= 25 * 3 * LOOPS  # every frame of the 24 s


def test_halves_fall_back_to_one_piece_when_the_seam_frame_has_max_faces(long_clip, monkeypatch):
    """max_faces=1 on a one-face clip: MediaPipe tracks across the seam, so the first half's
    landmarker goes on over the second half itself; the answers are still the one-piece ones."""
    ref, _ = _analyse(long_clip, "1", monkeypatch, max_faces=1)
    got, clock = _analyse(long_clip, "2", monkeypatch, max_faces=1)
    _assert_identical(got, ref)


def test_a_failing_second_half_is_redone_by_the_first(long_clip, monkeypatch):
    from avsync.face.landmarks import create_landmarker
    from avsync.face.tracks import analyse_frames
    from avsync.io.media import iter_video_frames

    cores = halves.split_cores() or ({0}, {0})
    made = []

    def make():
        made.append(1)
        if len(made) == 2:  # the second half's landmarker
            raise RuntimeError("boom")
        return create_landmarker("mediapipe", max_faces=4)

    key = halves.seam_keyframe_s(long_clip)
    got = halves.analyse_halves(long_clip, key, cores, make, 640, 0, keep_crops=True)
    lm = create_landmarker("mediapipe", max_faces=4)
    try:
        ref = analyse_frames(iter_video_frames(long_clip, 640, rotate=0), lm, keep_crops=True)
    finally:
        lm.close()
    assert len(made) == 2
    _assert_identical(got, ref)
