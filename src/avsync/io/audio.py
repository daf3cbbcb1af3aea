"""Decoding audio in blocks: one chosen audio stream -> mono float32 at the analysis rate.

:func:`iter_audio_blocks` streams the samples, so a caller that only keeps compact features
(:class:`avsync.features.FeatureAccumulator`) uses memory independent of the duration;
:func:`avsync.io.media.load_audio` concatenates the same blocks. Times are on the container
clock (see :mod:`avsync.io.media`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np

from avsync.errors import MediaError
from avsync.io.media import (
    _GAP_MIN_S,
    MAX_GAP_S,
    _seconds,
    audio_stream,
    check_input_file,
    decode_frames,
    open_input,
)
from avsync.timing import SAMPLE_RATE_HZ


@dataclass(frozen=True)
class AudioStreamInfo:
    """The audio stream a result was measured on.

    index: position among the file's audio streams (0 = first; what ``--audio-stream`` takes);
    stream_index: its index among all streams of the container; language: ISO 639 tag or None.
    """

    index: int
    stream_index: int
    codec: str | None
    channels: int
    sample_rate_hz: int
    language: str | None
    n_audio_streams: int
    start_s: float | None = None
    """The stream's start time as the container states it (s), None when unknown."""


def describe_audio_stream(path: str | os.PathLike[str], index: int | None = None) -> AudioStreamInfo:
    """The audio stream :func:`iter_audio_blocks` would decode (MediaError when there is none)."""
    p = check_input_file(path)
    with open_input(p) as c:
        s = _pick(c, p, index)
        ctx = s.codec_context
        lang = (s.metadata or {}).get("language")
        return AudioStreamInfo(
            index=list(c.streams.audio).index(s), stream_index=int(s.index), codec=ctx.name,
            channels=int(ctx.channels or 0), sample_rate_hz=int(ctx.sample_rate or 0),
            language=None if lang in (None, "", "und") else str(lang),
            n_audio_streams=len(c.streams.audio),
            start_s=float(s.start_time * s.time_base) if s.start_time is not None and s.time_base else None)


def _pick(container: Any, p: Path, index: int | None) -> Any:
    stream = audio_stream(container, index)
    if stream is None:
        n = len(container.streams.audio)
        if n == 0:
            raise MediaError(f"{p} has no audio stream.")
        raise MediaError(f"{p} has {n} audio stream(s) (0..{n - 1}); --audio-stream {index} "
                         "does not exist.")
    return stream


def iter_audio_blocks(path: str | os.PathLike[str], sample_rate_hz: int = SAMPLE_RATE_HZ,
                      index: int | None = None) -> Iterator[tuple[float, np.ndarray]]:
    """Yield ``(start_s, block)``: consecutive mono float32 blocks in [-1, 1] at ``sample_rate_hz``.

    ``start_s`` (the same in every pair) is the container-clock time of the first decoded sample
    (after edit-list / priming trims). Holes in the audio timestamps longer than 10 ms are filled
    with silence. ``index`` picks the audio stream (0 = first; None = the default-disposition one,
    else the first). Raises MediaError (before the first block) when there is no such stream, and
    when nothing decodes.
    """
    if sample_rate_hz <= 0:
        raise ValueError(f"sample_rate_hz must be positive, got {sample_rate_hz}")
    p = check_input_file(path)
    with open_input(p) as c:  # fail early, not on the first next()
        _pick(c, p, index)
    return _blocks(p, sample_rate_hz, index)


def _blocks(p: Path, sample_rate_hz: int, index: int | None) -> Iterator[tuple[float, np.ndarray]]:
    with open_input(p) as c:
        stream = _pick(c, p, index)
        n_out = 0
        start_s: float | None = None
        next_in_s: float | None = None  # expected time of the next input sample

        def fresh() -> Any:
            return av.AudioResampler(format="flt", layout="mono", rate=sample_rate_hz)

        def drain(frames: list[Any]) -> Iterator[np.ndarray]:
            nonlocal n_out
            for f in frames:
                arr = f.to_ndarray().reshape(-1).astype(np.float32, copy=True)
                np.clip(arr, -1.0, 1.0, out=arr)
                n_out += arr.size
                yield arr

        resampler = fresh()
        for frame in decode_frames(c, stream, p):
            t = frame.time
            if start_s is None:
                start_s = float(t) if t is not None else (
                    _seconds(stream.start_time, stream.time_base) or 0.0)
            elif t is not None and next_in_s is not None and t - next_in_s > _GAP_MIN_S:
                for arr in drain(resampler.resample(None)):  # flush, then pad the hole
                    yield start_s, arr
                resampler = fresh()
                pad = int(round((float(t) - start_s) * sample_rate_hz)) - n_out
                if pad > MAX_GAP_S * sample_rate_hz:
                    raise MediaError(f"Cannot read {p}: its audio timestamps jump by "
                                     f"{pad / sample_rate_hz:.0f} s (a damaged file).")
                while pad > 0:  # in blocks of at most a minute: a long hole stays cheap
                    n = min(pad, 60 * sample_rate_hz)
                    n_out += n
                    pad -= n
                    yield start_s, np.zeros(n, np.float32)
            if frame.sample_rate:
                base = float(t) if t is not None else next_in_s
                if base is not None:
                    next_in_s = base + frame.samples / frame.sample_rate
            try:
                out = resampler.resample(frame)
            except ValueError:  # rate/layout changed mid-stream (a damaged header): start afresh
                yield from ((start_s, arr) for arr in drain(resampler.resample(None)))
                resampler = fresh()
                out = resampler.resample(frame)
            for arr in drain(out):
                yield start_s, arr
        for arr in drain(resampler.resample(None)):
            yield start_s or 0.0, arr
