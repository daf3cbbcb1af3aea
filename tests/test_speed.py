"""Issue 14 (speed): the faster front end gives the answers of the reference path.

The reference is computed in the same run (never frozen numbers, since the shipped weights may
be retrained): the sequential path (``AVSYNC_THREADS=1``: one landmarker, no thread) against
the default pipelined one (a decoding thread, the landmarker a frame ahead of the tracker).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from avsync.face import pipeline
from avsync.face.pipeline import face_threads, prefetch

pytest.importorskip("mediapipe")


def _detect(path, threads: int, monkeypatch, **kw):
    from avsync.inference import detect

    monkeypatch.setenv(pipeline.THREADS_ENV, str(threads))
    return detect(path, **kw)


def _assert_same(got, ref, conf_tol: float = 0.1) -> None:
    assert got.offset_frames == ref.offset_frames
    assert abs(got.confidence - ref.confidence) <= conf_tol
    assert [t.offset_frames for t in got.tracks] == [t.offset_frames for t in ref.tracks]
    assert [t.n_frames for t in got.tracks] == [t.n_frames for t in ref.tracks]


def test_raw_mediapipe_result_is_the_python_api_result(example_frames):
    """Reading MediaPipe's C result structs gives the numbers of its Python API, exactly."""
    from avsync.face.landmarks import MediaPipeLandmarker

    frames = example_frames[::3]
    out = {}
    for raw in (False, True):
        lm = MediaPipeLandmarker(raw=raw)
        try:
            assert lm._raw == raw  # the installed mediapipe exposes its C results
            out[raw] = [lm.detect(f, i / 25.0) for i, f in enumerate(frames)]
        finally:
            lm.close()
    assert sum(len(f) for f in out[True]) >= len(frames) - 1  # the example has one face
    for a, b in zip(out[False], out[True], strict=True):
        assert len(a) == len(b)
        for fa, fb in zip(a, b, strict=True):
            assert np.array_equal(fa.landmarks, fb.landmarks)
            assert np.array_equal(fa.blendshapes, fb.blendshapes, equal_nan=True)
            assert fa.box == fb.box


@pytest.mark.parametrize("clip", ["example", "AVCrossNet/muxed/E1_silent+target.mkv"])
def test_pipelined_detect_gives_the_reference_answers(clip, example_clip, realclip, monkeypatch):
    """Default method: same offsets (per file and per track), confidences within 0.1 (and in
    fact the same curve: the pipeline is exact)."""
    path = example_clip if clip == "example" else realclip(clip)
    ref = _detect(path, 1, monkeypatch)
    got = _detect(path, 2, monkeypatch)
    _assert_same(got, ref)
    assert got.curve == ref.curve


def test_pipelined_analysis_identical_signals(example_clip, monkeypatch):
    from avsync.inference import analyse_video

    out = {}
    for threads in (1, 2):
        monkeypatch.setenv(pipeline.THREADS_ENV, str(threads))
        out[threads] = analyse_video(example_clip, keep_crops=True)
    ref, got = out[1], out[2]
    assert got.n_frames == ref.n_frames and got.cuts == ref.cuts
    assert len(got.tracks) == len(ref.tracks) >= 1
    for a, b in zip(got.tracks, ref.tracks, strict=True):
        assert a.frame_index == b.frame_index
        assert np.array_equal(a.signal_matrix(), b.signal_matrix())
        assert np.array_equal(np.stack(list(a.mouth)), np.stack(list(b.mouth)))


def test_pipelined_detect_when_mediapipe_tracks(realclip, monkeypatch):
    """max_faces=1 with one face in view: MediaPipe tracks between frames (its answer depends
    on the previous frame); the pipeline keeps the order, so the answer is the sequential one."""
    path = realclip("AVCrossNet/muxed/E1_silent+target.mkv")
    ref = _detect(path, 1, monkeypatch, max_faces=1, drift=False)
    got = _detect(path, 2, monkeypatch, max_faces=1, drift=False)
    _assert_same(got, ref)
    assert got.curve == ref.curve


class _Stateful:
    """A fake landmarker with MediaPipe's state rule: after a frame with ``tracks_at_faces``
    faces its answer depends on that frame; else on the frame alone."""

    def __init__(self, script: dict[int, int], tracks_at_faces: int = 2) -> None:
        self.script, self.tracks_at_faces, self.prev = script, tracks_at_faces, None

    def detect(self, image, time_s):
        from avsync.face.landmarks import FaceDetection

        n = int(round(time_s * 25))
        shift = 0.0
        if self.prev is not None and self.script.get(self.prev, 1) >= self.tracks_at_faces:
            shift = 0.001 * self.prev  # "tracked": depends on this landmarker's previous frame
        self.prev = n
        faces = []
        for f in range(self.script.get(n, 1)):
            xy = np.full((478, 2), 10.0 + 50 * f + shift, np.float32)
            xy[1] += 20.0
            box = (10.0 + 50 * f, 10.0, 30.0 + 50 * f, 30.0)
            faces.append(FaceDetection(xy, np.zeros(10, np.float32), box))
        return faces

    def close(self):
        pass


def _frames(n: int):
    from avsync.io.frames import VideoFrame

    return [VideoFrame(i, i / 25, np.zeros((8, 8, 3), np.uint8)) for i in range(n)]


@pytest.mark.parametrize("script", [{}, {5: 2}, {5: 2, 6: 2, 9: 2}, {0: 2, 1: 2}])
@pytest.mark.parametrize("n_landmarkers,ahead", [(1, 1), (1, 3), (2, 0)])
def test_landmarkers_ahead_or_alternating_give_the_sequential_answers(script, n_landmarkers, ahead):
    """One landmarker working ahead is exact by construction; two alternating ones are exact for
    this fake (whose state matters only after a frame with tracks_at_faces faces, where the
    pipeline goes on with one landmarker), not for MediaPipe (face.pipeline)."""
    from avsync.face.pipeline import detect_alternating

    frames = _frames(20)
    ref = [faces for _, faces in detect_alternating(frames, [_Stateful(script)])]
    got = list(detect_alternating(frames, [_Stateful(script) for _ in range(n_landmarkers)],
                                  ahead=ahead))
    assert [f.index for f, _ in got] == list(range(20))
    for (_, a), b in zip(got, ref, strict=True):
        assert len(a) == len(b)
        assert all(np.array_equal(x.landmarks, y.landmarks) for x, y in zip(a, b, strict=True))


def test_fast_stride_interpolates_the_skipped_frames():
    from avsync.face.pipeline import detect_alternating

    class Moving(_Stateful):
        def detect(self, image, time_s):
            faces = super().detect(image, time_s)
            n = int(round(time_s * 25))
            return [type(f)(f.landmarks + n, f.blendshapes + n, f.box) for f in faces]

    got = list(detect_alternating(_frames(9), [Moving({}), Moving({})], stride=2))
    assert [f.index for f, _ in got] == list(range(9))
    for frame, faces in got:  # landmarks move by 1 px per frame: interpolation is exact
        assert len(faces) == 1
        assert np.allclose(faces[0].landmarks[0], 10.0 + frame.index)
        assert np.allclose(faces[0].blendshapes, frame.index)


def test_face_threads_follows_the_environment(monkeypatch):
    monkeypatch.setenv(pipeline.THREADS_ENV, "3")
    assert face_threads() == 3
    monkeypatch.delenv(pipeline.THREADS_ENV)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # batch workers
    assert face_threads() == 1
    monkeypatch.setenv(pipeline.THREADS_ENV, "junk")
    assert face_threads() == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.delenv(pipeline.THREADS_ENV)
    assert face_threads() >= 1


def test_prefetch_order_errors_and_early_close():
    assert list(prefetch(range(50), depth=3, map_fn=lambda x: 2 * x)) == [2 * x for x in range(50)]

    def broken():
        yield 1
        raise ValueError("bad frame")

    it = prefetch(broken())
    assert next(it) == 1
    with pytest.raises(ValueError, match="bad frame"):
        next(it)

    produced = []

    def endless():
        n = 0
        while True:
            produced.append(n)
            yield n
            n += 1

    before = threading.active_count()
    it = prefetch(endless(), depth=2)
    assert [next(it) for _ in range(5)] == list(range(5))
    it.close()
    assert threading.active_count() == before  # the decoding thread is gone
    n = len(produced)
    assert n <= 5 + 2 + 2  # stopped within the queue depth


@pytest.mark.skipif(pipeline.core_split() is None, reason="needs CPU affinity and two usable cores")
def test_landmarker_gets_a_core_of_its_own_and_the_caller_gets_its_cores_back():
    """With one landmarker on two or more cores: the landmarker is made and called on the last
    usable core, the frames are decoded (produced) on the others, the caller's cores come back."""
    import os

    from avsync.face.pipeline import detected_frames

    front, lm_core = pipeline.core_split()
    before = os.sched_getaffinity(0)
    seen: dict[str, set] = {}

    class Recording(_Stateful):
        def __init__(self):
            super().__init__({})
            seen["made"] = os.sched_getaffinity(0)

        def detect(self, image, time_s):
            seen.setdefault("detect", set()).update(os.sched_getaffinity(0))
            return super().detect(image, time_s)

    def frames():
        for f in _frames(12):
            seen.setdefault("produced", set()).update(os.sched_getaffinity(0))
            yield f

    with detected_frames(frames(), Recording, threads=2) as detected:
        got = [f.index for f, _ in detected]
    assert got == list(range(12))
    assert seen["made"] == {lm_core} and seen["detect"] == {lm_core}
    assert seen["produced"] == front and lm_core not in seen["produced"]
    assert os.sched_getaffinity(0) == before
    with detected_frames(frames(), Recording, threads=1) as detected:  # sequential: no split
        list(detected)
    assert seen["made"] == before


def test_tracks_scored_on_threads_give_the_one_thread_answers(realclip, monkeypatch):
    """A multi-face clip (several tracks): the default method scoring its tracks on two threads
    (each with a copy of the method) gives the per-track curves, drift and confidences of
    scoring them one after the other."""
    from avsync.inference import analyse_audio, analyse_video, synchronise, track_groups
    from avsync.models.registry import DEFAULT_METHOD, create_model

    path = realclip("avobjects/media/demo.mp4")
    monkeypatch.setenv(pipeline.THREADS_ENV, "1")
    analysis = analyse_video(path, keep_crops=True)
    audio = analyse_audio(path, logmel=True)
    fps = float(np.round(1.0 / np.median(np.diff(analysis.frame_times_s)), 3))
    out = {}
    for threads in ("1", "2"):
        monkeypatch.setenv(pipeline.THREADS_ENV, threads)
        method = create_model(DEFAULT_METHOD)
        scored = [t for t in analysis.tracks if t.n_frames >= 12]
        groups = track_groups(scored, method)
        assert len(groups) == (1 if threads == "1" else min(2, len(scored)))
        assert sorted(i for _, idx in groups for i in idx) == list(range(len(scored)))
        out[threads] = synchronise(analysis, audio, fps, method)
    assert len(scored) >= 2  # the clip has several face tracks, or this test proves nothing
    (ref_tracks, ref_cs), (got_tracks, got_cs) = out["1"], out["2"]
    assert np.allclose(got_cs.scores, ref_cs.scores, rtol=0, atol=1e-5)
    assert got_cs.offset_frames == pytest.approx(ref_cs.offset_frames, abs=1e-3)
    for a, b in zip(got_tracks, ref_tracks, strict=True):
        assert (a.track_id, a.offset_frames, a.speaking) == (b.track_id, b.offset_frames, b.speaking)
        assert abs(a.confidence - b.confidence) <= 1e-3
        assert [d.offset_frames for d in a.drift] == [d.offset_frames for d in b.drift]


def test_track_groups_balance_and_fall_back():
    """Longest tracks first to the least-loaded thread; a method without ``thread_copy`` (or one
    thread) scores every track itself."""
    from types import SimpleNamespace

    from avsync.inference import track_groups
    from avsync.models.methods import CorrelationMethod

    tracks = [SimpleNamespace(n_frames=n) for n in (100, 900, 300, 500)]
    method = CorrelationMethod()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(pipeline.THREADS_ENV, "2")
        groups = track_groups(tracks, method)
        assert [idx for _, idx in groups] == [[1], [0, 2, 3]]  # 900 | 500 + 300 + 100
        assert groups[0][0] is method
        plain = object()
        assert track_groups(tracks, plain) == [(plain, [0, 1, 2, 3])]
        mp.setenv(pipeline.THREADS_ENV, "1")
        assert track_groups(tracks, method) == [(method, [0, 1, 2, 3])]
