"""A small audio/video writer for tests and synthetic data (not for the user's files)."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from avsync.io.output import atomic_output
from avsync.timing import SAMPLE_RATE_HZ

# suffix -> (default video codec, default audio codec)
_DEFAULTS: dict[str, tuple[str | None, str]] = {
    ".mp4": ("libx264", "aac"),
    ".m4v": ("libx264", "aac"),
    ".mov": ("libx264", "aac"),
    ".mkv": ("libx264", "aac"),
    ".avi": ("mpeg4", "pcm_s16le"),
    ".mpg": ("mpeg1video", "mp2"),
    ".mpeg": ("mpeg1video", "mp2"),
    ".m4a": (None, "aac"),
    ".wav": (None, "pcm_s16le"),
}
_FALLBACK = {"libx264": "mpeg4", "libmp3lame": "mp2", "aac": "mp2"}


def codec_available(name: str) -> bool:
    """True if PyAV's FFmpeg build has an encoder called ``name``."""
    try:
        av.codec.Codec(name, "w")
    except Exception:  # noqa: BLE001 - UnknownCodecError and friends
        return False
    return True


def pick_codec(name: str) -> str:
    """``name`` if its encoder exists, else a built-in fallback (libx264 -> mpeg4, ...)."""
    while not codec_available(name) and name in _FALLBACK:
        name = _FALLBACK[name]
    return name


def as_rate(fps: float | Fraction) -> Fraction:
    """Frame rate as an exact Fraction (29.97002997... -> 30000/1001)."""
    if isinstance(fps, Fraction):
        rate = fps
    else:
        rate = Fraction(fps).limit_denominator(1001)
        if abs(float(rate) - fps) > 1e-6:
            rate = Fraction(fps).limit_denominator(100_000)
    if rate <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    return rate


def _planar_audio(audio: np.ndarray) -> np.ndarray:
    """(n,) or (n, channels) samples -> (channels, n) float32 C-contiguous in [-1, 1]."""
    a = np.asarray(audio)
    if a.dtype.kind in "iu":
        a = a.astype(np.float32) / float(np.iinfo(a.dtype).max + 1)
    a = np.asarray(a, dtype=np.float32)
    if a.ndim == 1:
        a = a[None, :]
    elif a.ndim == 2:
        a = a.T
    else:
        raise ValueError(f"audio must have shape (n,) or (n, channels), got {a.shape}")
    if a.shape[0] not in (1, 2):
        raise ValueError(f"audio must be mono or stereo, got {a.shape[0]} channels")
    return np.ascontiguousarray(np.clip(a, -1.0, 1.0))


def _even(frames: np.ndarray) -> np.ndarray:
    """Pad H and W to even sizes (yuv420p needs them) by repeating the last row/column."""
    _, h, w, _ = frames.shape
    if h % 2 or w % 2:
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return frames


def _add_video(out: Any, codec: str, rate: Fraction, h: int, w: int) -> Any:
    vs = out.add_stream(codec, rate=rate)
    vs.width, vs.height = w, h
    vs.pix_fmt = "yuv420p"
    vs.codec_context.time_base = 1 / rate
    if codec == "libx264":
        vs.options = {"crf": "18", "preset": "veryfast"}
    elif codec in ("mpeg4", "mpeg1video", "mpeg2video"):
        vs.codec_context.bit_rate = max(1_000_000, int(w * h * float(rate) * 0.5))
    return vs


def write_av(
    path: str | os.PathLike[str],
    frames: np.ndarray | None,
    fps: float | Fraction | None,
    audio: np.ndarray | None,
    sample_rate_hz: int = SAMPLE_RATE_HZ,
    audio_codec: str | None = None,
    video_codec: str | None = None,
    *,
    overwrite: bool = True,
) -> Path:
    """Write a clip: ``frames`` (T, H, W, 3) uint8 RGB at ``fps`` frames/s and/or ``audio``.

    ``audio`` is float in [-1, 1] (or int16), shaped (n,) or (n, 2), at ``sample_rate_hz``
    (Hz); audio sample 0 and video frame 0 both play at t = 0 s. Either may be None (video-only
    / audio-only file). Codecs default by suffix (.mp4/.mov/.mkv: h264 yuv420p + aac, or
    mpeg4 when libx264 is missing; .avi: mpeg4 + pcm; .mpg: mpeg1video + mp2; .wav: pcm).
    Odd frame sizes are padded to even. ``fps`` may be fractional (30000/1001 or 29.97...).
    The file is written atomically (see :func:`atomic_output`).
    """
    p = Path(path)
    if frames is None and audio is None:
        raise ValueError("write_av needs frames, audio or both")
    vdef, adef = _DEFAULTS.get(p.suffix.lower(), ("libx264", "aac"))
    if frames is not None:
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(
                f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}"
            )
        if fps is None:
            raise ValueError("fps is required when writing frames")
        frames = _even(frames)
    planar = _planar_audio(audio) if audio is not None else None

    with atomic_output(p, overwrite=overwrite) as tmp, av.open(str(tmp), mode="w") as out:
        vs = as_ = None
        if frames is not None:
            rate = as_rate(fps)  # type: ignore[arg-type]
            vs = _add_video(
                out, pick_codec(video_codec or vdef or "libx264"), rate, *frames.shape[1:3]
            )
        if planar is not None:
            as_ = out.add_stream(pick_codec(audio_codec or adef), rate=int(sample_rate_hz))
            as_.codec_context.layout = "mono" if planar.shape[0] == 1 else "stereo"
            as_.codec_context.time_base = Fraction(1, int(sample_rate_hz))
        a_pos = 0

        def push_audio(until: int) -> None:  # encode audio up to sample `until`
            nonlocal a_pos
            layout = "mono" if planar.shape[0] == 1 else "stereo"
            until = min(until, planar.shape[1])
            while a_pos < until:
                n = min(4096, until - a_pos)
                af = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(planar[:, a_pos : a_pos + n]), format="fltp", layout=layout
                )
                af.sample_rate = int(sample_rate_hz)
                af.pts = a_pos
                af.time_base = Fraction(1, int(sample_rate_hz))
                out.mux(as_.encode(af))
                a_pos += n

        if vs is not None:
            for i, img in enumerate(frames):
                if as_ is not None:  # keep the file interleaved
                    push_audio(int((i + 1) / rate * sample_rate_hz))
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
                vf.pts = i
                vf.time_base = vs.codec_context.time_base
                out.mux(vs.encode(vf))
            out.mux(vs.encode(None))
        if as_ is not None:
            push_audio(planar.shape[1])
            out.mux(as_.encode(None))
    return p
