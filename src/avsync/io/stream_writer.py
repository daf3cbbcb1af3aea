"""Write a video from a stream of frames (constant memory) plus a mono or stereo audio track.

Like :func:`avsync.io.writer.write_av`, but the frames come from an iterator, so a long video
(e.g. a dubbed one, see :mod:`avsync.lipgen.dub`) is never held in memory. H.264 (yuv420p, CRF
18) + AAC for .mp4/.mov/.mkv, mpeg4 when libx264 is missing; odd sizes are padded to even.
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from avsync.io.output import atomic_output
from avsync.io.writer import _add_video, _planar_audio, as_rate, pick_codec
from avsync.timing import SAMPLE_RATE_HZ


def write_stream(
    path: str | Path,
    frames: Iterable[np.ndarray],
    fps: float | Fraction,
    size: tuple[int, int],
    audio: np.ndarray | None,
    sample_rate_hz: int = SAMPLE_RATE_HZ,
    overwrite: bool = True,
) -> tuple[Path, int]:
    """Write ``frames`` ((H, W, 3) uint8 RGB each, ``size`` = (W, H)) at ``fps`` with ``audio``
    (float in [-1, 1], (n,) or (n, 2), at ``sample_rate_hz``; sample 0 plays with frame 0)
    atomically to ``path``. Returns (path, frames written); ValueError when no frame came."""
    w, h = size
    ew, eh = w + w % 2, h + h % 2
    rate = as_rate(fps)
    planar = _planar_audio(audio) if audio is not None else None
    n = 0
    with atomic_output(Path(path), overwrite=overwrite) as tmp, av.open(str(tmp), mode="w") as out:
        vs = _add_video(out, pick_codec("libx264"), rate, eh, ew)
        a_s, layout = None, "mono"
        if planar is not None:
            layout = "mono" if planar.shape[0] == 1 else "stereo"
            a_s = out.add_stream(pick_codec("aac"), rate=int(sample_rate_hz))
            a_s.codec_context.layout = layout
            a_s.codec_context.time_base = Fraction(1, int(sample_rate_hz))
        a_pos = 0

        def push_audio(until: int) -> None:
            nonlocal a_pos
            until = min(until, planar.shape[1])
            while a_pos < until:
                k = min(4096, until - a_pos)
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(planar[:, a_pos : a_pos + k]),
                                                format="fltp", layout=layout)
                af.sample_rate = int(sample_rate_hz)
                af.pts = a_pos
                af.time_base = Fraction(1, int(sample_rate_hz))
                out.mux(a_s.encode(af))
                a_pos += k

        for img in frames:
            if img.shape != (h, w, 3) or img.dtype != np.uint8:
                raise ValueError(f"frame {n}: expected ({h}, {w}, 3) uint8, got {img.shape} {img.dtype}")
            if (eh, ew) != (h, w):
                img = np.pad(img, ((0, eh - h), (0, ew - w), (0, 0)), mode="edge")
            if a_s is not None:
                push_audio(int((n + 1) / rate * sample_rate_hz))
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            vf.pts = n
            vf.time_base = vs.codec_context.time_base
            out.mux(vs.encode(vf))
            n += 1
        if n == 0:
            raise ValueError("no frame to write")
        out.mux(vs.encode(None))
        if a_s is not None:
            push_audio(planar.shape[1])
            out.mux(a_s.encode(None))
    return Path(path), n
