"""The visual front end on several cores: decoding, landmarks and tracking run side by side.

Sequentially, every frame waits for the last one's decode, colour conversion, landmarks and
mouth crops in turn. Here (when more than one thread is allowed, see :func:`face_threads`),
three stages overlap, each in frame order:

* a decoding thread decodes the frames (PyAV, which releases the GIL; its decoder has threads
  of its own) and a converting thread converts and downscales them (io.frames.DecodedFrame) and
  computes what the tracker needs from the whole image (cut histogram, grey image), a few
  frames ahead (``RAW_PREFETCH_FRAMES``, ``PREFETCH_FRAMES``);
* the landmarker works on frame n + 1 on its own thread (MediaPipe runs its graph in native
  threads, GIL released) ...
* ... while the calling thread cuts frame n's mouth crops and associates its faces into tracks.

Same answers, exactly: the landmarker sees the same frames in the same order, the tracker gets
the same inputs (tests/test_speed.py compares the signals, crops and curves).

Cores (Linux, :func:`core_split`): with one landmarker and two or more usable cores, the
landmarker gets a core of its own (the last usable one: MediaPipe's graph threads, made when it
is created, and the thread that calls it) and every other thread of the analysis (decoding, the
decoder's own threads, converting, tracking) the other cores. Left to the scheduler these
threads hand work to each other across both cores; split, the 60 s 720p test clip ran
1.01-1.25x faster (median 1.12x over five alternating pairs, docs/BENCHMARKS.md "Speed v3"),
with the same answers. The calling thread's affinity is restored at the end.

Not the default: ``n_landmarkers=2`` (``detect --fast``) gives alternate landmarked frames to
two landmarkers. MediaPipe's VIDEO mode carries state from one frame to the next: with
``max_faces`` faces in view it tracks instead of detecting, and a face it stops detecting is
still tracked from the previous frame. So the two landmarkers' answers differ from one
landmarker's wherever that state matters (on a 60 s 720p clip: 2 frames of 1500, where a second
face appeared, enough to split a track differently and move the confidence by 0.16). At the
first frame with ``max_faces`` faces the pipeline goes on with one landmarker (exact from
there); the other differences remain.

Memory: at most ``RAW_PREFETCH_FRAMES`` decoded and ``PREFETCH_FRAMES`` converted frames wait
in the queues, plus two per landmarker.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from avsync.cpu import THREADS_ENV, allowed_cores, usable_threads  # noqa: F401  (THREADS_ENV re-exported)
from avsync.face.landmarks import FaceDetection, LandmarkBackend, landmark_box
from avsync.face.mouth import grey_image
from avsync.face.tracks import MIN_IOU, VisualAnalysis, box_iou, frame_hist, track_detections
from avsync.io.frames import VideoFrame

PREFETCH_FRAMES: int = 8
"""Converted frames the converting thread may hold ready (640 px RGB: ~0.7 MB each)."""

RAW_PREFETCH_FRAMES: int = 4
"""Decoded, not yet converted frames the decoding thread may hold ready (4K YUV: 12 MB each)."""

FAST_STRIDE: int = 2
"""``detect --fast``: landmarks on every FAST_STRIDE-th frame, interpolated in between."""

FAST_LANDMARKERS: int = 2
"""``detect --fast``: landmarkers taking the landmarked frames in turn (both cores busy)."""


def core_split() -> tuple[set[int], int] | None:
    """(cores for the front end, the landmarker's core) when this thread may run on two or more
    cores (Linux), else None: the landmarker on the last usable core, the rest on the others."""
    allowed = allowed_cores()
    if len(allowed) < 2:
        return None
    return set(allowed[:-1]), allowed[-1]


def _pin_thread(cores: set[int]) -> None:
    """Confine the calling thread (Linux: pid 0 is the thread) to ``cores``; best effort."""
    try:
        os.sched_setaffinity(0, cores)
    except (AttributeError, OSError):
        pass


def face_threads() -> int:
    """Threads for the face analysis: ``avsync.cpu.usable_threads`` (``AVSYNC_THREADS``, else
    ``OMP_NUM_THREADS``, else the usable CPU count)."""
    return usable_threads()


@dataclass(frozen=True, eq=False)
class PreparedFrame:
    """A decoded frame with what the tracker reads from the whole image, computed ahead:
    image (H, W, 3) uint8 RGB, grey (H, W) uint8, hist (512,) float (tracks.frame_hist)."""

    index: int
    time_s: float
    image: np.ndarray
    grey: np.ndarray
    hist: np.ndarray


def prepare(frame, clock: dict | None = None) -> PreparedFrame:
    """Convert a (lazily decoded, io.frames.DecodedFrame) frame and compute its grey image and
    cut histogram; clock["convert"] (s) accumulates the time (one thread writes it)."""
    t0 = time.perf_counter()
    image = frame.image  # a DecodedFrame converts here
    out = PreparedFrame(frame.index, frame.time_s, image, grey_image(image), frame_hist(image))
    if clock is not None:
        clock["convert"] = clock.get("convert", 0.0) + time.perf_counter() - t0
    return out


def materialize(frame) -> VideoFrame:
    """A VideoFrame whose image is converted once (DecodedFrame.image converts on each read)."""
    return frame if isinstance(frame, VideoFrame) else VideoFrame(frame.index, frame.time_s, frame.image)


_END = object()


def prefetch(items: Iterable, depth: int = PREFETCH_FRAMES, clock: dict | None = None,
             map_fn: Callable | None = None) -> Iterator:
    """Iterate ``items`` (``map_fn`` applied) on a background thread, ``depth`` items ahead.

    Exceptions of the producer are raised in the consumer, at the point they happened.
    clock["decode_wait"] (s) accumulates the time the consumer waited for an item.
    Closing the generator early stops the producer (within one item).
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                q.put(map_fn(item) if map_fn is not None else item)
        except BaseException as exc:  # noqa: BLE001  (re-raised in the consumer)
            q.put(exc)
            return
        q.put(_END)

    thread = threading.Thread(target=produce, name="avsync-decode", daemon=True)
    thread.start()
    try:
        while True:
            t0 = time.perf_counter()
            item = q.get()
            if clock is not None:
                clock["decode_wait"] = clock.get("decode_wait", 0.0) + time.perf_counter() - t0
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get(timeout=0.05)
            except queue.Empty:
                pass
        thread.join()


def detect_alternating(frames: Iterable, landmarkers: list[LandmarkBackend], stride: int = 1,
                       ahead: int = 0, landmark_cores: set[int] | None = None) -> Iterator:
    """(frame, faces) in frame order; the j-th landmarked frame goes to ``landmarkers[j % k]``
    on that landmarker's own thread, so k frames are landmarked at once, and ``ahead`` more are
    queued (``ahead=1`` with one landmarker: it works on the next frame while the caller
    tracks this one; with several landmarkers keep ``ahead=0``, which the switch to one
    landmarker below assumes). One landmarker, stride 1, ahead 0: plain calls, no thread.

    Exactness (module doc): a landmarker's answer depends on its previous frame only when that
    frame had ``max_faces`` faces (MediaPipe then tracks instead of detecting). So at the first
    frame with ``max_faces`` faces, the frames already sent to the other landmarkers are sent
    again to the landmarker that saw it, and that one landmarker goes on alone: the result is
    the sequential one. ``max_faces``: the landmarkers' ``tracks_at_faces`` attribute (None or
    absent: a stateless backend, never switch).

    stride > 1 (``fast``): only every stride-th frame is landmarked; the faces of the frames in
    between are interpolated (:func:`interpolate_faces`), their crops still cut from their own
    pixels. landmark_cores: the landmarkers' threads run there (module doc, "Cores").
    """
    max_faces = getattr(landmarkers[0], "tracks_at_faces", None)
    if len(landmarkers) == 1 and stride == 1 and ahead == 0:
        for frame in frames:
            yield frame, landmarkers[0].detect(frame.image, frame.time_s)
        return
    init = None if landmark_cores is None else (lambda: _pin_thread(landmark_cores))
    pools = [ThreadPoolExecutor(1, thread_name_prefix=f"avsync-landmarks{i}", initializer=init)
             for i in range(len(landmarkers))]
    active = list(range(len(landmarkers)))  # landmarkers still in use
    pending: deque = deque()  # [frame, future or None for a skipped frame]
    last: tuple | None = None  # (frame, faces) of the last landmarked frame already yielded

    def submit(i: int, frame) -> Any:
        fut = pools[i].submit(landmarkers[i].detect, frame.image, frame.time_s)
        fut.landmarker = i
        return fut

    def go_sequential(i: int) -> None:
        """Landmarker i alone from now on; the frames in flight elsewhere are redone on it."""
        active[:] = [i]
        for entry in pending:
            if entry[1] is not None:
                entry[1].result()  # let the other landmarker finish; its answer is dropped
                entry[1] = submit(i, entry[0])

    def settle(flush: bool) -> Iterator:
        """Yield the oldest pending frames whose faces are known (or can be interpolated)."""
        nonlocal last
        while pending:
            if not flush and sum(e[1] is not None for e in pending) < len(active) + ahead:
                return  # keep every active landmarker busy
            frame0, fut = pending[0]
            if fut is not None:
                pending.popleft()
                faces = fut.result()
                if max_faces is not None and len(active) > 1 and len(faces) >= max_faces:
                    go_sequential(fut.landmarker)
                last = (frame0, faces)
                yield last
                continue
            nxt = next((e for e in pending if e[1] is not None), None)
            pending.popleft()
            if nxt is None or last is None:  # the tail (or no landmarks yet): hold the last faces
                yield frame0, [] if last is None else list(last[1])
            else:
                yield frame0, interpolate_faces(last, (nxt[0], nxt[1].result()), frame0.time_s)

    try:
        j = 0
        for n, frame in enumerate(frames):
            fut = None
            if n % stride == 0:
                fut = submit(active[j % len(active)], frame)
                j += 1
            pending.append([frame, fut])
            yield from settle(False)
        yield from settle(True)
    finally:
        for _, fut in pending:
            if fut is not None:
                fut.cancel()
        for pool in pools:
            pool.shutdown(wait=True)


def interpolate_faces(before: tuple, after: tuple, time_s: float) -> list[FaceDetection]:
    """Faces at ``time_s`` between two landmarked frames ``(frame, faces)``: each face of
    ``before`` whose box overlaps a face of ``after`` (IoU >= tracks.MIN_IOU, greedy) gets its
    landmarks and blendshapes linearly interpolated in time; unmatched faces are left out."""
    (f0, faces0), (f1, faces1) = before, after
    span = f1.time_s - f0.time_s
    w = float(np.clip((time_s - f0.time_s) / span, 0.0, 1.0)) if span > 0 else 0.0
    pairs = sorted(((box_iou(a.box, b.box), i, j) for i, a in enumerate(faces0)
                    for j, b in enumerate(faces1)), reverse=True)
    used0, used1, out = set(), set(), []
    for iou, i, j in pairs:
        if iou < MIN_IOU or i in used0 or j in used1:
            continue
        used0.add(i)
        used1.add(j)
        a, b = faces0[i], faces1[j]
        xy = ((1.0 - w) * a.landmarks + w * b.landmarks).astype(np.float32)
        shapes = ((1.0 - w) * a.blendshapes + w * b.blendshapes).astype(np.float32)
        out.append(FaceDetection(xy, shapes, landmark_box(xy)))
    return out


def analyse_stream(frames: Iterable, make_landmarker: Callable[[], LandmarkBackend],
                   on_frame: Callable[[int], None] | None = None, keep_crops: bool = False,
                   rgb_crop_size: int = 0, threads: int | None = None, n_landmarkers: int = 1,
                   clock: dict | None = None, stride: int = 1) -> VisualAnalysis:
    """Landmarks + tracks over ``frames`` (VideoFrame-like, in order), like
    ``tracks.analyse_frames``, on up to ``threads`` threads (default :func:`face_threads`).

    threads == 1: the sequential path (no thread with one landmarker). Else a decoding thread,
    the landmarker one frame ahead of the tracker, and with ``n_landmarkers`` > 1 that many
    landmarkers on alternate frames (not the same answers: module doc).
    The landmarkers are made here and closed before returning. stride > 1: landmarks on every
    stride-th frame only, interpolated in between (``detect --fast``; changes the answers).
    """
    with detected_frames(frames, make_landmarker, threads, n_landmarkers, clock, stride) as detected:
        return track_detections(detected, on_frame, keep_crops, rgb_crop_size)


@contextmanager
def detected_frames(frames: Iterable, make_landmarker: Callable[[], LandmarkBackend],
                    threads: int | None = None, n_landmarkers: int = 1, clock: dict | None = None,
                    stride: int = 1) -> Iterator[Iterator]:
    """The ``(frame, faces)`` pairs of :func:`analyse_stream`, in frame order, for a caller
    that tracks them itself (avsync.streaming); threads, landmarkers and queues are set up
    here and stopped/closed when the ``with`` block ends."""
    threads = face_threads() if threads is None else max(1, threads)
    k = max(1, min(n_landmarkers, threads))
    landmarkers: list[LandmarkBackend] = []
    stages: list = []  # generators, closed last-first (pools join before the landmarkers close)
    split = core_split() if threads > 1 and k == 1 else None  # (front cores, landmarker's core)
    try:
        if split is not None:  # MediaPipe's graph threads inherit the creating thread's cores
            _pin_thread({split[1]})
        for _ in range(k):
            landmarkers.append(make_landmarker())
        if split is not None:  # the threads made from here on (decoding, converting) inherit these
            _pin_thread(split[0])
        if threads > 1:  # decoding thread -> converting thread -> landmarker thread -> caller
            stages.append(prefetch(frames, depth=RAW_PREFETCH_FRAMES))
            frames = prefetch(stages[-1], clock=clock, map_fn=lambda f: prepare(f, clock))
            stages.append(frames)
        else:
            frames = map(materialize, frames)
        ahead = int(threads > 1 and k == 1)  # two alternating landmarkers keep both cores busy
        stages.append(detect_alternating(frames, landmarkers, stride, ahead,
                                         None if split is None else {split[1]}))
        yield stages[-1]
    finally:
        for stage in reversed(stages):
            stage.close()
        for lm in landmarkers:
            lm.close()
        if split is not None:  # the caller's cores back (core_split read them: front + landmarker)
            _pin_thread(split[0] | {split[1]})
