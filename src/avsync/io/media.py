"""Reading media: probe a file, open its streams, decode its audio track (its video frames:
:mod:`avsync.io.frames`).

All times are in seconds on the *container clock* (``pts * time_base`` as libavformat reports
it), so that video frame times and audio sample times can be compared directly.

Edit lists, VFR and start offsets -- what we found on the real clips (PyAV 18 / libav* 62):

* libavformat's mov/mp4 demuxer applies edit lists by default, the way ffmpeg/ffplay do. Media
  hidden by the edit list is still demuxed (decoders need the reference frames), but those
  packets carry ``AV_PKT_FLAG_DISCARD`` (``packet.is_discard``) and usually negative pts, and
  libavcodec drops the frames decoded from them. Decoding through PyAV therefore already returns
  exactly the presented frames, and the audio decoder applies the sample-exact start trim (the
  demuxer's skip-samples side data). We never seek: ``seek(0)`` after a first pass is not a
  reliable rewind (on the VFR clip below it skipped the first two audio packets, so the audio
  started at 23 ms instead of 0; on the GRID clip the decoder lost the first 12 frames), so
  every pass opens the file afresh. (No ffmpeg/ffprobe binary is installed here; the counts
  below match those in MANIFEST.tsv, which were taken with ffprobe.)
* ``vanshg-auto_avsr/data/leah_crop1.mp4``: the mvhd says 8.104 s; the video edit keeps 4.061 s
  from media time 97738/24000 s, the audio edit 4.017 s from 180220/44100 s. PyAV: container
  duration 4.061 s; 194 video packets of which 98 are discard (97 with negative pts, 1 past the
  end), 96 decoded frames at pts 0 .. 3.962 s (23.976 fps); 217 audio packets, 43 discard,
  177156 decoded samples (4.017 s) starting at pts 0 (the first frame has only 4 samples).
  ``stream.frames`` (194) counts stored, not presented, frames, so ``n_frames`` is estimated
  from the duration instead when the two disagree.
* ``video-retalking/examples/face/1.mp4``: VFR (average 1350/61 = 22.13 fps, r_frame_rate 30;
  frame gaps of 512 and 1024 ticks at 1/15360 s, i.e. 33 and 67 ms). An empty edit of 33 ms
  delays the video: first frame at 507/15360 = 0.033 s, audio at 0.0 s (its 1024 priming
  samples are discarded by the edit list). 135 frames, 269312 audio samples at 44.1 kHz.
* ``lip-reading-deeplearning/data/sample_video.mp4``: 30000/1001 fps, 266 stored frames of
  which 57 are hidden by the edit list -> 209 presented frames, 0 .. 6.940 s; audio starts at
  0.0 s after a 1206-sample trim (one whole discarded packet + 182 samples skipped).
* ``LipNet/evaluation/samples/GRID/bbaf2n.mpg`` (MPEG-PS, mpeg1video + mp2): 75 frames at 25 fps
  (0 .. 2.96 s), audio 131328 samples at 44.1 kHz from 0.0 s, no edit list. Here too a
  ``seek(0)`` made the decoder lose the first 12 frames.
* ``demo2show-.../sample_1_separated.mp4``: video starts 67.3 ms after the audio (empty edit);
  frame gaps 3028..3031 ticks of 1/90000 s, i.e. CFR at 29.71 fps by the 10 % rule.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.stream
import numpy as np

from avsync.errors import MediaError
from avsync.timing import SAMPLE_RATE_HZ

logger = logging.getLogger(__name__)

AV_ERRORS: tuple[type[BaseException], ...] = (av.FFmpegError, OSError, ValueError, EOFError)
"""Every exception type PyAV raises for unreadable or broken media."""

_VFR_TOLERANCE = 0.10  # a frame duration more than 10 % off the median counts as variable
_VFR_PACKETS = 120  # packets inspected by probe() for the VFR heuristic
_GAP_MIN_S = 0.010  # audio timestamp holes longer than this are filled with silence
MAX_GAP_S = 600.0  # a longer hole is a damaged timestamp, not silence to allocate (fuzzing)
_MAX_DECODE_ERRORS = 100


@dataclass(frozen=True)
class MediaInfo:
    """What :func:`probe` learns about a file (times in seconds, sizes in pixels).

    Fields of an absent stream are 0 / ``None``. ``width``/``height`` are the coded size
    (display rotation is applied by :func:`iter_video_frames`, not here; see
    :func:`avsync.io.orientation.display_rotation_cw`).
    """

    path: Path
    container: str
    duration_s: float
    has_video: bool
    has_audio: bool
    fps: float
    width: int
    height: int
    video_codec: str | None
    audio_codec: str | None
    audio_rate_hz: int
    audio_channels: int
    video_start_s: float | None
    audio_start_s: float | None
    is_vfr: bool
    n_frames: int


@dataclass(frozen=True, eq=False)
class AudioTrack:
    """Mono float32 samples in [-1, 1]; ``samples[0]`` plays at ``start_s`` (container clock)."""

    samples: np.ndarray
    sample_rate_hz: int
    start_s: float

    @property
    def duration_s(self) -> float:
        """Length of the track in seconds."""
        return len(self.samples) / self.sample_rate_hz


# ----------------------------------------------------------------------------- helpers


def error_reason(exc: BaseException) -> str:
    """A short human reason for a PyAV/OS exception (no path, no errno)."""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(text).strip().rstrip(".")


def check_input_file(path: str | os.PathLike[str]) -> Path:
    """Return ``path`` as a Path, or raise MediaError if it is missing, a folder or empty."""
    p = Path(path)
    if not p.exists():
        raise MediaError(f"Cannot read {p}: the file does not exist.")
    if p.is_dir():
        raise MediaError(f"Cannot read {p}: it is a folder, not a media file.")
    if p.stat().st_size == 0:
        raise MediaError(f"Cannot read {p}: the file is empty (0 bytes).")
    if not os.access(p, os.R_OK):
        raise MediaError(f"Cannot read {p}: permission denied.")
    return p


def open_input(p: Path) -> Any:
    """Open ``p`` with PyAV for reading; MediaError if FFmpeg cannot make sense of it."""
    try:
        return av.open(str(p), mode="r", metadata_errors="ignore")
    except AV_ERRORS as exc:
        raise MediaError(
            f"Cannot read {p}: it is not a media file FFmpeg can open ({error_reason(exc)})."
        ) from exc


def video_stream(container: Any) -> Any | None:
    """The first real video stream (cover-art pictures are skipped), or None."""
    for s in container.streams.video:
        if not s.disposition & av.stream.Disposition.attached_pic:
            return s
    return None


def audio_stream(container: Any, index: int | None = None) -> Any | None:
    """Audio stream number ``index`` (0 = first audio stream), or with ``index=None`` the
    default-disposition one (else the first); None when there is no such stream."""
    streams = list(container.streams.audio)
    if index is not None:
        return streams[index] if 0 <= index < len(streams) else None
    for s in streams:
        if s.disposition & av.stream.Disposition.default:
            return s
    return streams[0] if streams else None


def _seconds(value: int | None, time_base: Fraction | None) -> float | None:
    if value is None or time_base is None:
        return None
    return float(value * time_base)


def decode_frames(container: Any, stream: Any, p: Path, from_key_s: float | None = None
                  ) -> Iterator[Any]:
    """Decode ``stream`` packet by packet, tolerating corrupt packets and a truncated tail.

    Never seeks (see the module notes). Frames hidden by an edit list are dropped by
    libavcodec. Raises MediaError only when the stream fails before yielding anything.
    from_key_s: start decoding at the keyframe packet whose pts is this time (s), the packets
    before it demuxed and dropped undecoded (face.chunks); MediaError when there is none.
    """
    n_out = 0
    n_err = 0
    packets = container.demux(stream)
    if from_key_s is not None:
        packets = _from_keyframe(packets, from_key_s, p)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            break
        except AV_ERRORS as exc:  # truncated / corrupt container: flush what we have
            logger.warning("%s: stopped reading after a demux error (%s)", p, error_reason(exc))
            if n_out == 0 and n_err == 0:
                n_err += 1
            packet = None
        try:
            frames = stream.decode(packet)
        except AV_ERRORS as exc:
            n_err += 1
            if n_err > _MAX_DECODE_ERRORS:
                logger.warning("%s: too many decode errors (%s)", p, error_reason(exc))
                break
            continue
        for frame in frames:
            n_out += 1
            yield frame
        if packet is None:
            break
    if n_out == 0:
        what = "video frame" if stream.type == "video" else f"{stream.type} frame"
        detail = " (the file looks damaged or truncated)" if n_err else ""
        raise MediaError(f"No {what} could be decoded from {p}{detail}.")


def _from_keyframe(packets: Iterator[Any], key_s: float, p: Path) -> Iterator[Any]:
    """``packets`` from the keyframe packet at ``key_s`` (pts time, within 1 us) on."""
    for packet in packets:
        t = _seconds(packet.pts, packet.time_base)
        if packet.is_keyframe and t is not None and abs(t - key_s) < 1e-6:
            yield packet
            yield from packets
            return
    raise MediaError(f"{p}: no video keyframe at {key_s:.6f} s")


# ----------------------------------------------------------------------------- probe


def _guess_vfr(container: Any, stream: Any) -> bool:
    """Heuristic VFR test on the first packets' pts: do frame durations vary by > 10 %?"""
    pts: list[int] = []
    try:
        for packet in container.demux(stream):
            if packet.pts is not None and packet.size and not packet.is_discard:
                pts.append(packet.pts)
            if len(pts) >= _VFR_PACKETS:
                break
    except AV_ERRORS:
        pass
    if len(pts) < 4:
        return False
    diffs = np.diff(np.unique(np.asarray(pts, dtype=np.int64)))
    med = float(np.median(diffs))
    if med <= 0:
        return False
    return bool((np.abs(diffs - med) > _VFR_TOLERANCE * med).mean() > 0.05)


def _video_fields(v: Any, duration_s: float) -> dict[str, Any]:
    ctx = v.codec_context
    v_dur = float(v.duration * v.time_base) if v.duration and v.time_base else duration_s
    fps = 0.0
    if v.average_rate:
        fps = float(v.average_rate)
    elif v.frames and v_dur > 0:
        fps = v.frames / v_dur
    elif v.guessed_rate:
        fps = float(v.guessed_rate)
    est = int(round(v_dur * fps))
    # stream.frames counts *stored* frames, including those an edit list hides.
    exact = bool(v.frames) and abs(v.frames - est) <= max(2, 0.02 * est)
    return dict(
        fps=fps,
        width=int(ctx.width or 0),
        height=int(ctx.height or 0),
        video_codec=ctx.name,
        video_start_s=_seconds(v.start_time, v.time_base),
        n_frames=int(v.frames) if exact else est,
    )


def probe(path: str | os.PathLike[str]) -> MediaInfo:
    """Describe the media file at ``path`` (durations in s, rates in Hz / frames per s).

    ``fps`` is the average frame rate; ``n_frames`` an estimate (exact for ordinary files);
    ``is_vfr`` a heuristic on the first 120 frames. Raises MediaError (one sentence) for a
    missing, empty or unreadable file, a folder, or a file with neither video nor audio.
    """
    p = check_input_file(path)
    with open_input(p) as c:
        v, a = video_stream(c), audio_stream(c)
        if v is None and a is None:
            raise MediaError(f"{p} has neither a video nor an audio stream.")
        try:
            durations = [
                float(s.duration * s.time_base)
                for s in (v, a)
                if s is not None and s.duration and s.time_base
            ]
            duration_s = c.duration / av.time_base if c.duration else max(durations, default=0.0)
            fields: dict[str, Any] = dict(
                fps=0.0, width=0, height=0, video_codec=None, video_start_s=None, n_frames=0
            )
            if v is not None:
                fields.update(_video_fields(v, duration_s))
            actx = a.codec_context if a is not None else None
            info = MediaInfo(
                path=p,
                container=c.format.name,
                duration_s=float(duration_s),
                has_video=v is not None,
                has_audio=a is not None,
                audio_codec=actx.name if actx is not None else None,
                audio_rate_hz=int(actx.sample_rate or 0) if actx is not None else 0,
                audio_channels=int(actx.channels or 0) if actx is not None else 0,
                audio_start_s=_seconds(a.start_time, a.time_base) if a is not None else None,
                is_vfr=_guess_vfr(c, v) if v is not None else False,
                **fields,
            )
        except (AttributeError, TypeError, *AV_ERRORS) as exc:
            raise MediaError(
                f"Cannot read {p}: its streams could not be parsed ({error_reason(exc)})."
            ) from exc
    return info


# ----------------------------------------------------------------------------- audio


def load_audio(path: str | os.PathLike[str], sample_rate_hz: int = SAMPLE_RATE_HZ,
               audio_stream: int | None = None) -> AudioTrack:
    """Decode the audio of ``path`` to mono float32 at ``sample_rate_hz`` (Hz), all in memory.

    ``start_s`` is the container-clock time of the first decoded sample (after edit-list /
    priming trims), so audio that starts before or after the video keeps its true position.
    Holes in the audio timestamps longer than 10 ms are filled with silence. ``audio_stream``
    picks the audio stream (0 = first; None = the default one). Raises MediaError when there is
    no such stream or nothing decodes. Long files: stream :func:`avsync.io.audio.iter_audio_blocks`.
    """
    from avsync.io.audio import iter_audio_blocks

    starts, chunks = [0.0], []
    for start_s, block in iter_audio_blocks(path, sample_rate_hz, audio_stream):
        starts[0] = start_s
        chunks.append(block)
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return AudioTrack(samples=samples, sample_rate_hz=sample_rate_hz, start_s=starts[0])


_LAZY = {"shift_audio": "remux", "write_av": "writer", "atomic_output": "output",
         "iter_video_frames": "frames", "VideoFrame": "frames", "DecodedFrame": "frames"}


def __getattr__(name: str) -> Any:
    """Also expose the frame reader and the writers here (``from avsync.io.media import
    shift_audio``), lazily: they live in their own modules, which import this one."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"avsync.io.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
