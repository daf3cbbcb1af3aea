"""The face analysis of one file as two halves, one per core, with the answers of one piece.

The landmarker (~8 ms of CPU per frame, docs/BENCHMARKS.md "Speed v3") is the front end's
floor when one landmarker reads every frame in order: with it on a core of its own
(face.pipeline), the other core decodes, converts and tracks and waits part of the time. Here
the file is cut at the video keyframe nearest its middle (found by demuxing packets, nothing
decoded; never a seek: io.media's notes say why) and each half runs whole on its own core set:

* the second half (a thread pinned to the second core set): decoded from its keyframe (the
  packets before it are read and dropped), converted, landmarked by a landmarker of its own, and
  each face's tracker crops cut ahead (``tracks.PrecutFace``); only these small records are
  kept (~10 KB per frame and face), not the pictures;
* the first half (the calling thread, pinned to the first core set): decoded up to the keyframe,
  landmarked and tracked as in the sequential path; then the same tracker goes on over the
  second half's records, so tracks, cuts and the lip flow run across the seam exactly as in one
  piece.

Same answers as one piece (tested): the keyframe's frame and every frame after it decode to the
same pixels from the keyframe as from the start, and a landmarker's answer depends on its
previous frame only when that frame had ``max_faces`` faces (face.pipeline's notes). So when the
first half's last frame has ``max_faces`` faces, or the second half fails in any way, the second
half's records are dropped and the first half's landmarker goes on over the second half itself
(the sequential answer, at the cost of redoing that half).

Used by ``inference.analyse_video`` for files of at least ``MIN_SPLIT_S`` with a keyframe that
leaves a quarter or more of the frames on each side, at their native rate (<= 37.5 fps), when
two or more threads and cores are allowed; everything else takes face.pipeline's path.
"""

from __future__ import annotations

import queue
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avsync.cpu import allowed_cores, usable_threads
from avsync.errors import AvsyncError
from avsync.face.landmarks import LandmarkBackend
from avsync.face.pipeline import _pin_thread, prepare
from avsync.face.tracks import PrecutFace, VisualAnalysis, cut_crops, track_detections
from avsync.io.media import check_input_file, iter_video_frames, open_input, video_stream

MIN_SPLIT_S: float = 20.0
"""Shorter files are analysed in one piece (x264's default keyframe interval is 10 s)."""

MIN_SIDE_FRACTION: float = 0.25
"""The seam keyframe must leave at least this share of the frames on each side."""


@dataclass(frozen=True, eq=False)
class SecondHalfFrame:
    """What the tracker needs of one second-half frame: time, cut histogram, image size (W, H)
    and faces with their crops cut ahead (no picture: ``image`` is None)."""

    index: int
    time_s: float
    hist: np.ndarray
    size: tuple[int, int]
    image: None = None
    grey: None = None


def split_cores() -> tuple[set[int], set[int]] | None:
    """(first half's cores, second half's cores) when two threads and two cores are allowed."""
    allowed = allowed_cores()
    if usable_threads() < 2 or len(allowed) < 2:
        return None
    half = len(allowed) // 2
    return set(allowed[:half]), set(allowed[half:])


def seam_keyframe_s(path: str | Path) -> float | None:
    """The pts time (s) of the video keyframe nearest the middle frame, from the packets alone,
    or None: a stream shorter than MIN_SPLIT_S, a packet without pts, or no keyframe leaving
    MIN_SIDE_FRACTION of the (presented) frames on each side."""
    p = check_input_file(path)
    times: list[float] = []
    keys: list[float] = []
    with open_input(p) as c:
        stream = video_stream(c)
        if stream is None:
            return None
        for packet in c.demux(stream):
            if packet.size == 0:  # the demuxer's flush packet
                continue
            if packet.pts is None or packet.time_base is None:
                return None
            if packet.is_discard:  # hidden by an edit list: never presented
                continue
            t = float(packet.pts * packet.time_base)
            times.append(t)
            if packet.is_keyframe:
                keys.append(t)
    if len(times) < 2 or not keys:
        return None
    times.sort()
    if times[-1] - times[0] < MIN_SPLIT_S:
        return None
    mid = times[len(times) // 2]
    key = min(keys, key=lambda k: abs(k - mid))
    before = bisect_left(times, key - 1e-6)
    lo = MIN_SIDE_FRACTION * len(times)
    return key if lo <= before <= len(times) - lo else None


def analyse_halves(path: str | Path, key_s: float, cores: tuple[set[int], set[int]],
                   make_landmarker: Callable[[], LandmarkBackend], max_side: int,
                   rotation_cw: int, on_frame: Callable[[int], None] | None = None,
                   keep_crops: bool = False, rgb_crop_size: int = 0,
                   clock: dict | None = None) -> VisualAnalysis:
    """``tracks.analyse_frames`` over every frame of ``path``, the halves before and from the
    keyframe at ``key_s`` on ``cores`` (module doc); rotation_cw: the turn of every frame."""
    first_cores, second_cores = cores
    rgb = rgb_crop_size if keep_crops else 0
    records: queue.Queue = queue.Queue()
    stop = threading.Event()
    end = object()

    def second_half() -> None:
        _pin_thread(second_cores)  # the landmarker's and the decoder's threads inherit these
        lm = None
        try:
            lm = make_landmarker()
            frames = iter_video_frames(path, max_side, rotate=rotation_cw, lazy=True, from_key_s=key_s)
            for n, frame in enumerate(frames):
                if stop.is_set():
                    return
                pf = prepare(frame)
                if n == 0 and abs(pf.time_s - key_s) > 1e-6:
                    raise AvsyncError(f"the second half starts at {pf.time_s} s, not {key_s} s")
                faces = [PrecutFace(f.landmarks, f.blendshapes, f.box,
                                    crops=cut_crops(pf.image, pf.grey, f.landmarks, keep_crops, rgb))
                         for f in lm.detect(pf.image, pf.time_s)]
                records.put((SecondHalfFrame(pf.index, pf.time_s, pf.hist,
                                             (pf.image.shape[1], pf.image.shape[0])), faces))
            records.put(end)
        except BaseException as exc:  # noqa: BLE001  (the first half redoes this half)
            records.put(exc)
        finally:
            if lm is not None:
                lm.close()

    restore = first_cores | second_cores
    _pin_thread(first_cores)
    worker = threading.Thread(target=second_half, name="avsync-second-half", daemon=True)
    lm_first = make_landmarker()
    worker.start()

    def pairs() -> Iterator:
        last: list = []
        for frame in iter_video_frames(path, max_side, rotate=rotation_cw, stop_s=key_s):
            last = lm_first.detect(frame.image, frame.time_s)
            yield frame, last
        max_faces = getattr(lm_first, "tracks_at_faces", None)
        exact = max_faces is None or len(last) < max_faces
        done_s = -np.inf  # time of the last second-half frame already tracked
        while exact:
            item = records.get()
            if item is end:
                return
            if isinstance(item, BaseException):
                break
            done_s = item[0].time_s
            yield item
        # Not exact, or the second half failed: this landmarker goes on over the second half
        # (from where its records stopped), as one piece would.
        stop.set()
        for frame in iter_video_frames(path, max_side, rotate=rotation_cw, from_key_s=key_s):
            if frame.time_s > done_s:
                yield frame, lm_first.detect(frame.image, frame.time_s)

    try:
        analysis = track_detections(pairs(), on_frame, keep_crops, rgb_crop_size)
    finally:
        stop.set()
        while worker.is_alive():
            try:
                records.get(timeout=0.05)
            except queue.Empty:
                pass
        worker.join()
        lm_first.close()
        _pin_thread(restore)
    if clock is not None:
        clock["halves_seam_s"] = float(key_s)
    return analysis
