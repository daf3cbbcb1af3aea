"""Issue 14 (speed): the face analysis in keyframe chunks on two cores gives the one-piece answers.

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

from avsync.face import chunks, pipeline

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


def test_seams_are_keyframes(long_clip, example_clip):
    (key,) = chunks.seam_keyframes_s(long_clip)  # two halves
    assert abs(key - 12.0) <= 3.0 + 1e-6 and abs(key / 3.0 - round(key / 3.0)) < 1e-6
    seams = chunks.seam_keyframes_s(long_clip, chunk_s=6.0)  # about every 6 s
    assert len(seams) == 3 and all(abs(s / 3.0 - round(s / 3.0)) < 1e-6 for s in seams)
    assert seams == sorted(seams) and all(b - a >= 3.0 for a, b in zip(seams, seams[1:], strict=False))
    assert chunks.seam_keyframes_s(example_clip) == []  # 3 s: one piece


@pytest.mark.parametrize("backend", ["mesh", "mediapipe"])
def test_two_halves_give_the_one_piece_analysis(long_clip, monkeypatch, backend):
    """mesh (the default) tracks across frames and restarts at the seam in one piece too
    (chunks.SeamResets); MediaPipe's graph needs no restart there (chunks' module doc)."""
    ref, ref_clock = _analyse(long_clip, "1", monkeypatch, face_backend=backend)
    got, clock = _analyse(long_clip, "2", monkeypatch, face_backend=backend)
    assert "chunks" not in ref_clock
    if chunks.split_cores() is None:
        pytest.skip("this process may run on one core only")
    assert clock["chunks"] == 2
    _assert_identical(got, ref)
    assert ref.n_frames >= 25 * 3 * LOOPS  # every frame of the 24 s


def test_chunks_fall_back_to_one_piece_when_the_seam_frame_has_max_faces(long_clip, monkeypatch):
    """max_faces=1 on a one-face clip: MediaPipe tracks across the seam, so the rest is
    landmarked in one piece from the first half's start; the answers are the one-piece ones."""
    ref, _ = _analyse(long_clip, "1", monkeypatch, max_faces=1, face_backend="mediapipe")
    got, clock = _analyse(long_clip, "2", monkeypatch, max_faces=1, face_backend="mediapipe")
    _assert_identical(got, ref)


@pytest.mark.parametrize(("fail_at", "backend"), [(2, "mediapipe"), (3, "mediapipe"), (2, "mesh")])
def test_a_failing_chunk_is_redone_in_one_piece(long_clip, fail_at, backend):
    from avsync.face.landmarks import create_landmarker
    from avsync.face.tracks import analyse_frames
    from avsync.io.frames import iter_video_frames

    cores = chunks.split_cores() or ({0}, {0})
    made = []
    seams = chunks.seam_keyframes_s(long_clip, chunk_s=6.0)

    def make():
        made.append(1)
        if len(made) == fail_at:  # some chunk's landmarker
            raise RuntimeError("boom")
        return create_landmarker(backend, max_faces=4)

    # as analyse_video: a tracker restarts at the seams, in chunks and in the one-piece rest
    got = chunks.analyse_chunked(long_clip, seams, cores, chunks.with_seam_resets(make, seams), 640, 0,
                                 keep_crops=True)
    lm = chunks.SeamResets(create_landmarker(backend, max_faces=4), seams)
    try:
        ref = analyse_frames(iter_video_frames(long_clip, 640, rotate=0), lm, keep_crops=True)
    finally:
        lm.close()
    assert len(made) > fail_at  # it failed, and the one-piece rest made a landmarker of its own
    _assert_identical(got, ref)


def test_long_files_stream_in_chunks_with_the_one_piece_answers(long_clip, monkeypatch):
    """The segment-by-segment path of long files (avsync.streaming, forced here with 4 s
    segments) in 6 s chunks on two cores: the same result as one thread."""
    from avsync import inference

    monkeypatch.setattr(inference, "SEGMENT_S", 4.0)
    monkeypatch.setattr(chunks, "CHUNK_S", 6.0)
    used = []
    real = chunks.chunked_detections
    monkeypatch.setattr(chunks, "chunked_detections", lambda *a, **k: used.append(a[1]) or real(*a, **k))
    out = {}
    for threads in ("1", "2"):
        monkeypatch.setenv(pipeline.THREADS_ENV, threads)
        out[threads] = inference.detect(long_clip, drift=True)
    if chunks.split_cores() is None:
        pytest.skip("this process may run on one core only")
    assert len(used) == 1 and len(used[0]) == 3  # the threads=2 run, in 4 chunks
    a, b = out["1"], out["2"]
    assert a.curve == b.curve and a.offset_frames == b.offset_frames and a.confidence == b.confidence
    assert [(t.track_id, t.n_frames, t.offset_frames, t.confidence) for t in a.tracks] == \
        [(t.track_id, t.n_frames, t.offset_frames, t.confidence) for t in b.tracks]


def test_detect_on_two_halves_gives_the_one_thread_result(long_clip, monkeypatch):
    """The whole ``detect`` (default method, drift) of a 24 s file read as two halves."""
    from avsync.inference import detect

    out = {}
    for threads in ("1", "2"):
        monkeypatch.setenv(pipeline.THREADS_ENV, threads)
        out[threads] = detect(long_clip)
    a, b = out["1"], out["2"]
    assert "chunks" not in a.timings_s
    if chunks.split_cores() is not None:
        assert b.timings_s["chunks"] == 2
    assert a.curve == b.curve and a.offset_frames == b.offset_frames and a.confidence == b.confidence
    assert [t.drift for t in a.tracks] == [t.drift for t in b.tracks]


ODD = {  # container: ffmpeg output options (a keyframe every 3 s)
    "mpg": ["-c:v", "mpeg1video", "-g", "75", "-q:v", "4", "-c:a", "mp2"],
    "avi": ["-c:v", "libx264", "-g", "75", "-bf", "3", "-c:a", "aac"],  # decode-order timestamps
    "webm": ["-c:v", "libvpx-vp9", "-g", "75", "-b:v", "400k", "-deadline", "realtime",
             "-cpu-used", "8", "-c:a", "libopus"],
}


@pytest.mark.parametrize("container", sorted(ODD))
def test_two_halves_in_other_containers(container, example_clip, tmp_path, monkeypatch):
    """MPEG-PS (where a seek once lost frames), AVI with B-frames (decode-order timestamps) and
    WebM/VP9: the halves give the one-piece analysis."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    path = tmp_path / f"looped.{container}"
    cmd = ["ffmpeg", "-v", "error", "-y", "-stream_loop", str(LOOPS - 1), "-i", str(example_clip),
           *ODD[container], str(path)]
    if subprocess.run(cmd, timeout=180).returncode != 0:
        pytest.skip(f"this ffmpeg cannot write {container}")
    ref, _ = _analyse(path, "1", monkeypatch)
    got, clock = _analyse(path, "2", monkeypatch)
    if chunks.split_cores() is not None:
        assert clock.get("chunks") == 2
    _assert_identical(got, ref)


def test_a_file_whose_packets_cannot_all_be_read_is_one_piece(long_clip, monkeypatch):
    """A demux error while looking for seams (a damaged file) means no chunks, not a failure:
    the one-piece reader tolerates damage (io.media.decode_frames)."""
    import av

    real_open = chunks.open_input

    class Broken:
        def __init__(self, c):
            self.c = c

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.c.close()

        @property
        def streams(self):
            return self.c.streams

        def demux(self, stream):
            for n, packet in enumerate(self.c.demux(stream)):
                if n == 100:
                    raise av.error.MemoryError(12, "Cannot allocate memory")
                yield packet

    assert chunks.seam_keyframes_s(long_clip)  # intact: a seam
    monkeypatch.setattr(chunks, "open_input", lambda p: Broken(real_open(p)))
    assert chunks.seam_keyframes_s(long_clip) == []



def test_fast_reaches_the_segment_by_segment_path_of_long_files(long_clip, monkeypatch):
    """``detect --fast`` on a long file (forced: 4 s segments) landmarks every other frame there
    too (it used to be ignored on that path), by two landmarkers in turn as on shorter files, and
    reads the same offset within a frame."""
    from avsync import inference, streaming

    monkeypatch.setattr(inference, "SEGMENT_S", 4.0)
    monkeypatch.setenv(pipeline.THREADS_ENV, "2")
    calls = []
    real = pipeline.detected_frames
    monkeypatch.setattr(pipeline, "detected_frames",
                        lambda *a, **k: calls.append((k.get("n_landmarkers", 1), k.get("stride", 1)))
                        or real(*a, **k))
    full = inference.detect(long_clip, drift=False)
    n_full = len(calls)
    fast = inference.detect(long_clip, drift=False, fast=True)
    assert streaming.wanted(fast.duration_s, fast.fps)  # the segment-by-segment path was taken
    assert calls[n_full:] == [(2, pipeline.FAST_STRIDE)]
    assert all(c == (1, 1) for c in calls[:n_full])
    assert abs(fast.offset_frames - full.offset_frames) <= 1.0
    assert sum(t.n_frames for t in fast.tracks) >= 0.9 * sum(t.n_frames for t in full.tracks)
