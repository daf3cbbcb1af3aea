"""Analysis frame rate: fast videos (50/60 fps) are analysed on a 25 fps grid.

The trained methods (landmark, c3 and their fusion, the default) were built on 25 fps clips:
their context windows, flow features and search range are counted in frames. A 60 fps copy of a
25 fps clip gives them windows of 2/5 of the trained length and, between duplicated frames, zero
optical flow. So a video faster than DECIMATE_ABOVE_FPS is analysed on a grid of
ANALYSIS_RATE_FPS: for each grid point the nearest decoded frame is kept (at most 1/120 s off at
60 fps, exact at 50 fps) and stamped with the grid time. Offsets are then counted in frames of that
grid (``SyncResult.fps`` says so) and in milliseconds as always.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Any

ANALYSIS_RATE_FPS: float = 25.0
"""Frame rate the trained methods were built for."""

DECIMATE_ABOVE_FPS: float = 1.5 * ANALYSIS_RATE_FPS
"""Videos faster than this (37.5 fps) are analysed on the ANALYSIS_RATE_FPS grid; 30 fps is not."""


def analysis_rate(fps: float) -> float | None:
    """The grid rate (fps) for a video of ``fps``, or None to analyse every frame."""
    return ANALYSIS_RATE_FPS if fps > DECIMATE_ABOVE_FPS else None


def on_grid(frames: Iterable[Any], rate_fps: float) -> Iterator[Any]:
    """The frames nearest to the points ``t0 + n / rate_fps`` (t0: the first frame's time).

    ``frames``: VideoFrame-like objects (``index``, ``time_s``, ``image``) in time order. Each
    grid point keeps at most one frame (none in a gap longer than a grid step); kept frames are
    renumbered 0, 1, ... and take the grid point's time (at most half a source frame from their
    own: the methods read audio at regular steps, as in training).
    """
    step = 1.0 / rate_fps
    t0: float | None = None
    best: Any = None
    best_n, best_dist, out = -1, 0.0, 0
    for f in frames:
        if t0 is None:
            t0 = f.time_s
        pos = (f.time_s - t0) / step
        n = math.floor(pos + 0.5)
        dist = abs(pos - n)
        if n == best_n:
            if dist < best_dist:
                best, best_dist = f, dist
            continue
        if best is not None:
            yield replace(best, index=out, time_s=t0 + best_n * step)
            out += 1
        best, best_n, best_dist = f, n, dist
    if best is not None:
        yield replace(best, index=out, time_s=t0 + best_n * step)
