"""Reading video frames: stream the presented frames of a file, converted to RGB.

Frame times are on the container clock, as everything in :mod:`avsync.io.media` (whose docstring
says what the real clips taught us about edit lists, VFR and start offsets).
"""

from __future__ import annotations

import heapq
import os
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from avsync.errors import MediaError
from avsync.io.media import (
    _seconds,
    check_input_file,
    decode_frames,
    open_input,
    video_stream,
)
from avsync.io.orientation import frame_rotation_cw, parse_rotate, rotate_image

_REORDER_WINDOW = 4  # frames held back to repair decode-order timestamps (AVI)


@dataclass(frozen=True, eq=False)
class VideoFrame:
    """One decoded frame: ``image`` is HxWx3 uint8 RGB, ``time_s`` on the container clock."""

    index: int
    time_s: float
    image: np.ndarray


@dataclass(frozen=True, eq=False)
class DecodedFrame:
    """A decoded frame whose RGB conversion is left to the reader (``lazy=True`` of
    :func:`iter_video_frames`): ``image`` converts on each access, so another thread can do it
    (avsync.face.pipeline); ``frame`` is PyAV's frame, ``time_s`` on the container clock."""

    index: int
    time_s: float
    frame: Any
    max_side: int | None
    rotation_cw: int

    @property
    def image(self) -> np.ndarray:
        """HxWx3 uint8 RGB, as VideoFrame.image."""
        return _to_rgb(self.frame, self.max_side, self.rotation_cw)



_SWS = threading.local()
"""Each thread's swscale converter (PyAV VideoReformatter), kept between frames."""


def _reformatter() -> Any:
    """This thread's VideoReformatter. ``frame.to_ndarray(format=..., width=...)`` makes a new one
    (a new swscale context) for every decoded frame; one kept per thread gives the same pixels
    in ~0.7 ms instead of ~1.2 ms a 720p frame (benchmarks/convert_frames.py)."""
    r = getattr(_SWS, "reformatter", None)
    if r is None:
        from av.video.reformatter import VideoReformatter

        r = _SWS.reformatter = VideoReformatter()
    return r


def _to_rgb(frame: Any, max_side: int | None, rotation_cw: int = 0) -> np.ndarray:
    """RGB (H, W, 3) uint8 of ``frame``, longest side capped at ``max_side``, then turned
    ``rotation_cw`` degrees clockwise (see avsync.io.orientation)."""
    w, h = frame.width, frame.height
    if max_side is not None and max(w, h) > max_side:
        scale = max_side / max(w, h)
        nw, nh = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
        rgb = _reformatter().reformat(frame, format="rgb24", width=nw, height=nh, interpolation="AREA")
    else:
        rgb = _reformatter().reformat(frame, format="rgb24")
    return rotate_image(rgb.to_ndarray(), rotation_cw)


def iter_video_frames(
    path: str | os.PathLike[str], max_side: int | None = 640, rotate: str | int | None = "auto",
    lazy: bool = False, from_key_s: float | None = None, stop_s: float | None = None,
) -> Iterator[VideoFrame]:
    """Stream the presented video frames of ``path`` in display order, in constant memory.

    ``max_side`` (pixels) caps ``max(H, W)`` of the returned RGB images, keeping the aspect
    ratio and never upscaling; ``None`` keeps the full size. ``rotate``: ``"auto"`` (default)
    turns the pictures upright as a player would, from the stream's display matrix (phone
    clips); 0/90/180/270 force that clockwise turn instead. Frame times are
    ``pts * time_base`` in seconds (``index / fps`` after the first time when pts is missing).
    Raises MediaError (before the first frame) when there is no video stream or when no frame
    decodes; a truncated file yields the frames that decode, then stops. ``lazy``: yield
    :class:`DecodedFrame` (converted when its ``image`` is read) instead. ``from_key_s``: only
    the frames at and after the keyframe whose pts is that time, decoded from it (face.chunks;
    indices then count from 0 there); ``stop_s``: only the frames before that time.
    """
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be >= 1 or None, got {max_side}")
    rotation_cw = parse_rotate(rotate)
    p = check_input_file(path)
    with open_input(p) as c:  # fail early, not on the first next()
        if video_stream(c) is None:
            raise MediaError(f"{p} has no video stream.")
    return _iter_video_frames(p, max_side, rotation_cw, lazy, from_key_s, stop_s)


def _iter_video_frames(p: Path, max_side: int | None, rotation_cw: int | None,
                       lazy: bool = False, from_key_s: float | None = None,
                       stop_s: float | None = None) -> Iterator[VideoFrame]:
    """Decode in display order; timestamps are re-sorted over a short window.

    Frames come out of the decoder in display order, but containers without pts (AVI) attach
    decode-order timestamps to them, e.g. 0.04, 0.16, 0.12 for H.264 with B-frames. Assigning
    the smallest pending timestamp to the oldest pending frame fixes that, and is a no-op for
    streams whose timestamps already increase (everything else). ``rotation_cw`` None: the
    first frame's display matrix decides the turn for the whole stream.
    """
    def out(index: int, time_s: float, image: Any, rotation: int) -> VideoFrame | DecodedFrame:
        if lazy:
            return DecodedFrame(index, time_s, image, max_side, rotation)
        return VideoFrame(index=index, time_s=time_s, image=image)

    c = open_input(p)
    try:
        stream = video_stream(c)
        stream.thread_type = "AUTO"
        fps = float(stream.average_rate or stream.guessed_rate or 25)
        t0 = _seconds(stream.start_time, stream.time_base) or 0.0
        window = max(_REORDER_WINDOW, 2 * int(stream.codec_context.has_b_frames or 0))
        lo = -np.inf if from_key_s is None else from_key_s - 1e-6
        hi = np.inf if stop_s is None else stop_s - 1e-6

        def in_order() -> Iterator[tuple[float, Any]]:
            """(time, picture) in display order, the smallest pending time to the oldest frame."""
            nonlocal rotation_cw
            images: deque[Any] = deque()
            times: list[float] = []
            for n, frame in enumerate(decode_frames(c, stream, p, from_key_s)):
                if rotation_cw is None:
                    rotation_cw = frame_rotation_cw(frame)
                t = frame.time
                if t is None and from_key_s is not None:
                    raise MediaError(f"{p}: a frame without a timestamp after {from_key_s:.3f} s")
                heapq.heappush(times, float(t) if t is not None else t0 + n / fps)
                images.append(frame if lazy else _to_rgb(frame, max_side, rotation_cw))
                if len(images) > window:
                    yield heapq.heappop(times), images.popleft()
            while images:
                yield heapq.heappop(times), images.popleft()

        index = 0
        for t_out, image in in_order():
            if t_out >= hi:
                return
            if t_out >= lo:
                yield out(index, t_out, image, rotation_cw)
                index += 1
    finally:
        c.close()
