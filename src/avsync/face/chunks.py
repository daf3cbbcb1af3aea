"""The face analysis of one file in keyframe chunks on two cores, with the answers of one piece.

The landmarker (~8 ms of CPU per frame, docs/BENCHMARKS.md "Speed v3") is the front end's
floor when one landmarker reads every frame in order: with it on a core of its own
(face.pipeline), the other core decodes, converts and tracks and waits part of the time. Here
the file is cut at video keyframes (found by demuxing packets, nothing decoded; never a seek:
io.media's notes say why) into chunks, and two workers, each pinned to its own cores, take the
chunks in turn: decode a chunk from its keyframe (the packets before it are read and dropped),
landmark it with a landmarker made for that chunk, and cut each face's tracker crops ahead
(``tracks.PrecutFace``; only these small records are kept, ~10 KB per frame and face, not the
pictures). The caller's one tracker reads the chunks' records in order, so cuts, tracks and the
lip flow run across the seams as in one piece. At most ``LOOKAHEAD_CHUNKS`` chunks are ahead of
the tracker, so memory does not grow with the duration (long files: avsync.streaming).

Same answers as one piece (tested): the frames from a keyframe decode to the same pixels as from
the start, and a MediaPipe landmarker's answer depends on its previous frame only when that frame
had ``max_faces`` faces (face.pipeline's notes). So a chunk's records stand only when the frame
before it had fewer faces; at the first seam where it had ``max_faces`` (or when a chunk fails),
the workers stop and the rest of the file is landmarked in one piece by face.pipeline, from the
start of the last chunk known to be right (a fresh landmarker there is in the one-piece state),
its frames up to the last one already tracked dropped. A backend whose answer always depends on
its previous frame (the default, face.mesh, which tracks each face) restarts at every seam in
one piece too (:class:`SeamResets`): its chunks are exact by construction.

Used by ``inference.analyse_video`` (files of 20-90 s: two chunks at the keyframe nearest the
middle) and ``avsync.streaming`` (longer files: chunks of about ``CHUNK_S``), at the file's native
rate (<= 37.5 fps), when two or more threads and cores are allowed.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avsync.cpu import allowed_cores, usable_threads
from avsync.errors import AvsyncError
from avsync.face.landmarks import LandmarkBackend
from avsync.face.pipeline import _pin_thread, detected_frames, prepare
from avsync.face.tracks import PrecutFace, VisualAnalysis, cut_crops, track_detections
from avsync.io.frames import iter_video_frames
from avsync.io.media import AV_ERRORS, check_input_file, open_input, video_stream
from avsync.io.orientation import display_rotation_cw, parse_rotate

MIN_SPLIT_S: float = 20.0
"""Shorter files are analysed in one piece (x264's default keyframe interval is 10 s)."""

CHUNK_S: float = 30.0
"""Long files (avsync.streaming): about this long a chunk."""

MIN_CHUNK_FRACTION: float = 0.5
"""A seam keyframe must leave at least this share of the intended chunk length on each side."""

LOOKAHEAD_CHUNKS: int = 2
"""Chunks a worker may start ahead of the one the tracker reads."""

SEAM_TOLERANCE_S: float = 1e-6
"""A frame at a seam's time (both from the same pts and time base) is the seam's frame."""


@dataclass(frozen=True, eq=False)
class ChunkFrame:
    """What the tracker needs of one frame landmarked by a worker: time, cut histogram, image
    size (W, H) and (beside it) faces with their crops cut ahead; no picture (``image`` None)."""

    index: int
    time_s: float
    hist: np.ndarray
    size: tuple[int, int]
    image: None = None
    grey: None = None


def split_cores() -> tuple[set[int], set[int]] | None:
    """(first worker's cores, second worker's cores) when two threads and two cores are allowed."""
    allowed = allowed_cores()
    if usable_threads() < 2 or len(allowed) < 2:
        return None
    half = len(allowed) // 2
    return set(allowed[:half]), set(allowed[half:])


def seam_keyframes_s(path: str | Path, chunk_s: float | None = None) -> list[float]:
    """Keyframe pts times (s) to cut the video at, from its packets alone: [] for a stream shorter
    than MIN_SPLIT_S, with a packet without pts, or whose packets cannot all be read. chunk_s
    None: one seam, the keyframe nearest the middle frame (if it leaves a quarter of the duration
    on each side); else about one seam every chunk_s seconds (each the keyframe nearest its
    target, at least MIN_CHUNK_FRACTION of chunk_s from the previous seam and from the end)."""
    p = check_input_file(path)
    times: list[float] = []
    keys: list[float] = []
    with open_input(p) as c:
        stream = video_stream(c)
        if stream is None:
            return []
        try:
            for packet in c.demux(stream):
                if packet.size == 0:  # the demuxer's flush packet
                    continue
                if packet.pts is None or packet.time_base is None:
                    return []
                if packet.is_discard:  # hidden by an edit list: never presented
                    continue
                t = float(packet.pts * packet.time_base)
                times.append(t)
                if packet.is_keyframe:
                    keys.append(t)
        except AV_ERRORS:  # a damaged file: one piece, whose reader tolerates it (io.media)
            return []
    if len(times) < 2 or not keys:
        return []
    times.sort()
    first, last = times[0], times[-1]
    if last - first < MIN_SPLIT_S:
        return []
    if chunk_s is None:
        targets, gap = [times[len(times) // 2]], 0.5 * (last - first)
    else:
        n = max(2, int(round((last - first) / chunk_s)))
        targets, gap = [first + (last - first) * k / n for k in range(1, n)], (last - first) / n
    seams: list[float] = []
    for target in targets:
        key = min(keys, key=lambda k: abs(k - target))
        lo = seams[-1] if seams else first
        if key - lo >= MIN_CHUNK_FRACTION * gap and last - key >= MIN_CHUNK_FRACTION * gap:
            seams.append(key)
    return seams


class SeamResets:
    """A landmark backend that starts its inner one afresh at each seam (the first frame at or
    after each time in ``seams_s``), when the inner one can (a ``reset()`` method: a tracker
    such as face.mesh, whose answer always depends on its previous frame).

    A chunk's landmarker is fresh at its seam; with this, one piece resets there too, so the
    answers are the same whether the file is analysed in chunks on two cores or in one piece
    (one core, a fallback), the seams being a property of the file (``seam_keyframes_s``).
    Backends without ``reset`` (MediaPipe's graph) pass through unchanged (the module doc says
    why their chunks are exact)."""

    def __init__(self, inner: LandmarkBackend, seams_s: list[float]) -> None:
        self._inner = inner
        self._seams = sorted(seams_s)
        self._next = 0
        self.tracks_at_faces = getattr(inner, "tracks_at_faces", None)

    def detect(self, image: np.ndarray, time_s: float) -> list:
        reset = getattr(self._inner, "reset", None)
        while self._next < len(self._seams) and time_s >= self._seams[self._next] - SEAM_TOLERANCE_S:
            if reset is not None:
                reset()
            self._next += 1
        return self._inner.detect(image, time_s)

    def close(self) -> None:
        self._inner.close()


def with_seam_resets(make: Callable[[], LandmarkBackend], seams_s: list[float]
                     ) -> Callable[[], LandmarkBackend]:
    """``make`` whose landmarkers are :class:`SeamResets` at ``seams_s`` (``make`` itself when
    there is no seam)."""
    if not seams_s:
        return make
    return lambda: SeamResets(make(), seams_s)


def plan_chunks(path: str | Path, rotate: str | int | None, chunk_s: float | None = None,
                seams_s: list[float] | None = None,
                ) -> tuple[list[float], tuple[set[int], set[int]], int] | None:
    """(seam keyframes s, the two workers' cores, the clockwise turn) when the face analysis of
    ``path`` can run in keyframe chunks on two cores; chunk_s None: two halves. seams_s: the
    file's ``seam_keyframes_s(path, chunk_s)`` when already known."""
    cores = split_cores()
    if cores is None:
        return None
    seams = seam_keyframes_s(path, chunk_s) if seams_s is None else seams_s
    if not seams:
        return None
    rotation = parse_rotate(rotate)
    return seams, cores, display_rotation_cw(path) if rotation is None else rotation


@contextmanager
def chunked_detections(path: str | Path, seams_s: list[float], cores: tuple[set[int], set[int]],
                       make_landmarker: Callable[[], LandmarkBackend], max_side: int,
                       rotation_cw: int, keep_crops: bool = False, rgb_crop_size: int = 0,
                       ) -> Iterator[Iterator[tuple]]:
    """``(frame, faces)`` of every frame of ``path`` in order, as face.pipeline's
    ``detected_frames`` gives them, computed in the chunks between ``seams_s`` by two workers on
    ``cores`` (module doc); worker frames are :class:`ChunkFrame` with ``PrecutFace`` faces.
    rotation_cw: the turn of every frame. Workers stop when the ``with`` block ends."""
    rgb = rgb_crop_size if keep_crops else 0
    bounds = list(zip([None, *seams_s], [*seams_s, None], strict=True))
    slots = [queue.Queue() for _ in bounds]  # per chunk: (frame, faces) ..., then _END or an error
    state = {"next": 0, "reading": 0, "max_faces": None}
    cond = threading.Condition()
    stop = threading.Event()

    def run_chunk(i: int) -> None:
        start, end = bounds[i]
        lm = make_landmarker()
        try:
            state["max_faces"] = getattr(lm, "tracks_at_faces", None)
            frames = iter_video_frames(path, max_side, rotate=rotation_cw, lazy=True,
                                       from_key_s=start, stop_s=end)
            for n, frame in enumerate(frames):
                if stop.is_set():
                    return
                pf = prepare(frame)
                if n == 0 and start is not None and abs(pf.time_s - start) > 1e-6:
                    raise AvsyncError(f"chunk {i} starts at {pf.time_s} s, not at {start} s")
                faces = [PrecutFace(f.landmarks, f.blendshapes, f.box,
                                    crops=cut_crops(pf.image, pf.grey, f.landmarks, keep_crops, rgb))
                         for f in lm.detect(pf.image, pf.time_s)]
                size = (pf.image.shape[1], pf.image.shape[0])
                slots[i].put((ChunkFrame(pf.index, pf.time_s, pf.hist, size), faces))
            slots[i].put(_END)
        finally:
            lm.close()

    def worker(my_cores: set[int]) -> None:
        _pin_thread(my_cores)  # the landmarkers' and the decoders' threads inherit these
        while True:
            with cond:
                cond.wait_for(lambda: stop.is_set() or state["next"] >= len(bounds)
                              or state["next"] <= state["reading"] + LOOKAHEAD_CHUNKS)
                if stop.is_set() or state["next"] >= len(bounds):
                    return
                i = state["next"]
                state["next"] += 1
            try:
                run_chunk(i)
            except BaseException as exc:  # noqa: BLE001  (the reader redoes it in one piece)
                slots[i].put(exc)

    workers = [threading.Thread(target=worker, args=(c,), name=f"avsync-chunks{w}", daemon=True)
               for w, c in enumerate(cores)]
    for t in workers:
        t.start()

    def pairs() -> Iterator[tuple]:
        done_s, last_faces = -np.inf, []
        for i in range(len(bounds)):
            with cond:
                state["reading"] = i
                cond.notify_all()
            max_faces = state["max_faces"]
            if i > 0 and max_faces is not None and len(last_faces) >= max_faces:
                yield from one_piece(i - 1, done_s)  # the seam is not exact: from chunk i-1 on
                return
            while True:
                item = slots[i].get()
                if item is _END:
                    break
                if isinstance(item, BaseException):
                    yield from one_piece(i, done_s)  # chunk i failed: redo it on from its start
                    return
                done_s, last_faces = item[0].time_s, item[1]
                yield item

    def one_piece(i: int, done_s: float) -> Iterator[tuple]:
        """Every frame after ``done_s``, landmarked in one piece from the start of chunk i."""
        stop_workers()
        frames = iter_video_frames(path, max_side, rotate=rotation_cw, lazy=True, from_key_s=bounds[i][0])
        with detected_frames(frames, make_landmarker) as detected:
            for frame, faces in detected:
                if frame.time_s > done_s:
                    yield frame, faces

    def stop_workers() -> None:
        stop.set()
        with cond:
            cond.notify_all()
        for t in workers:  # the chunk queues are unbounded: a worker never waits to put
            t.join()

    try:
        yield pairs()
    finally:
        stop_workers()


_END = object()


def analyse_chunked(path: str | Path, seams_s: list[float], cores: tuple[set[int], set[int]],
                    make_landmarker: Callable[[], LandmarkBackend], max_side: int,
                    rotation_cw: int, on_frame: Callable[[int], None] | None = None,
                    keep_crops: bool = False, rgb_crop_size: int = 0,
                    clock: dict | None = None) -> VisualAnalysis:
    """``tracks.analyse_frames`` over every frame of ``path``, computed in chunks (module doc)."""
    with chunked_detections(path, seams_s, cores, make_landmarker, max_side, rotation_cw,
                            keep_crops, rgb_crop_size) as detected:
        analysis = track_detections(detected, on_frame, keep_crops, rgb_crop_size)
    if clock is not None:  # detect reports its clock as seconds: a count here, as a float
        clock["chunks"] = float(len(seams_s) + 1)
    return analysis
