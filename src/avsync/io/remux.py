"""Correct a lip-sync offset: copy the video untouched, shift the audio sample-accurately.

The video packets are stream-copied with their original timestamps (no re-encode, no quality
loss). The audio is decoded to PCM at its native rate and channel layout, moved by a whole
number of samples (trimmed at one end and padded with silence at the other, so its duration is
unchanged) and re-encoded. Shifting decoded PCM -- rather than packet timestamps -- makes the
correction exact to one sample whatever the codec frame size.

Edit lists: packets hidden by the input's edit list arrive flagged ``is_discard`` (see
``avsync.io.media``). MP4/MOV outputs keep every leading hidden packet (later frames may
reference them) with its negative timestamp, so that the mov muxer writes an edit list that
hides them again (presentation starts at pts 0); the movie timescale is set to the video's so
that the edit is exact to the tick. Trailing hidden packets are dropped when no presented
packet follows them in decode order; when one does (a B-frame referencing a hidden P-frame),
they are kept and the output's edit list is shortened afterwards (``mov_edit``) so that they
stay hidden. Other containers cannot hide frames: leading hidden packets before a keyframe are
dropped, and if hidden frames would still have to be shown at the start we refuse (OutputError
asking for .mp4/.mov); hidden frames kept at the end become visible there (a warning is logged).
"""

from __future__ import annotations

import logging
import math
import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.bitstream
import numpy as np

from avsync.errors import MediaError, OutputError
from avsync.io.media import (
    AV_ERRORS,
    MAX_GAP_S,
    audio_stream,
    check_input_file,
    error_reason,
    open_input,
    video_stream,
)
from avsync.io.mov_edit import set_track_presentation_end
from avsync.io.output import atomic_output
from avsync.io.writer import codec_available, pick_codec

_MOV_FAMILY = {".mp4", ".m4v", ".mov", ".m4a"}
_FORMATS = {
    ".mp4": "mp4",
    ".m4v": "mp4",
    ".m4a": "mp4",
    ".mov": "mov",
    ".mkv": "matroska",
    ".avi": "avi",
    ".mpg": "mpeg",
    ".mpeg": "mpeg",
    ".wav": "wav",
}
_AUDIO_CODEC = {".avi": "pcm_s16le", ".wav": "pcm_s16le", ".mpg": "mp2", ".mpeg": "mp2"}  # else aac
_MKV_KEEP = {"flac": "flac", "pcm_s16le": "pcm_s16le", "mp3": "libmp3lame", "opus": "libopus"}
_GAP_MIN_S = 0.010
_ANNEXB = {"h264": "h264_mp4toannexb", "hevc": "hevc_mp4toannexb"}  # AVI needs start codes
_MPEG_PS_VIDEO = {"mpeg1video", "mpeg2video"}
logger = logging.getLogger(__name__)


class _DelayLine:
    """Move a planar (channels, n) signal ``shift`` samples earlier, keeping its length.

    ``shift > 0`` drops the first ``shift`` samples and appends as many zeros at the end;
    ``shift < 0`` prepends ``-shift`` zeros and drops as many samples at the end.
    """

    def __init__(self, shift: int, channels: int) -> None:
        self.to_skip = max(shift, 0)
        self.skipped = 0
        self.hold = max(-shift, 0)
        self.buf = np.zeros((channels, self.hold), np.float32)

    def push(self, x: np.ndarray) -> np.ndarray:
        if self.to_skip:
            k = min(self.to_skip, x.shape[1])
            x = x[:, k:]
            self.to_skip -= k
            self.skipped += k
        if not self.hold:
            return x
        self.buf = np.concatenate([self.buf, x], axis=1)
        out, self.buf = self.buf[:, : -self.hold], self.buf[:, -self.hold :]
        return out

    def finish(self) -> np.ndarray:
        return np.zeros((self.buf.shape[0], self.skipped), np.float32)


class _VideoGate:
    """Decide which video packets to copy (see the module notes on edit lists)."""

    def __init__(self, keep_leading: bool) -> None:
        self.keep_leading = keep_leading
        self.pending: list[Any] = []
        self.started = False

    def push(self, packet: Any) -> list[Any]:
        if packet.is_discard:
            if not self.started and not self.keep_leading and packet.is_keyframe:
                self.pending.clear()
            self.pending.append(packet)
            return []
        if not self.started and not self.keep_leading and packet.is_keyframe:
            self.pending.clear()  # decoding can start right here
        out, self.pending = [*self.pending, packet], []
        self.started = True
        return out


def _audio_codec(suffix: str, in_codec: str) -> str:
    """The audio encoder for an output of type ``suffix`` (input audio codec ``in_codec``)."""
    if suffix == ".mkv" and in_codec in _MKV_KEEP and codec_available(_MKV_KEEP[in_codec]):
        return _MKV_KEEP[in_codec]
    if suffix == ".avi":  # AVI cannot signal an mp3 encoder delay: pcm keeps sync exact
        return "pcm_s16le"
    return pick_codec(_AUDIO_CODEC.get(suffix, "aac"))


def _pick_rate(codec: str, rate: int) -> int:
    rates = av.codec.Codec(codec, "w").audio_rates
    if not rates or rate in rates:
        return rate
    higher = [r for r in rates if r >= rate]
    return min(higher) if higher else max(rates)


_DEFAULT_LAYOUTS = {
    1: "mono",
    2: "stereo",
    3: "3.0",
    4: "4.0",
    5: "5.0",
    6: "5.1",
    7: "6.1",
    8: "7.1",
}


def _layout(ctx: Any, codec: str) -> str:
    """Output channel layout: the input's, made explicit ("1 channels" -> "mono")."""
    channels = int(ctx.channels or 1)
    if codec in ("mp2", "libmp3lame") and channels > 2:
        channels = 2
    name = ctx.layout.name
    if channels != ctx.channels or name.endswith("channels"):  # unspecified channel order
        name = _DEFAULT_LAYOUTS.get(channels, "stereo")
    return name


def shift_audio(
    in_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    offset_ms: float,
    *,
    overwrite: bool = False,
    audio_stream_index: int | None = None,
) -> Path:
    """Write ``out_path``: ``in_path`` with its audio moved ``offset_ms`` milliseconds EARLIER.

    ``offset_ms > 0`` fixes audio that is late (avsync's sign convention); a negative value
    moves the audio later. The video is stream-copied; the audio keeps its sample rate, channel
    count, start time and duration, and is re-encoded (aac for .mp4/.mov/.m4v/.mkv -- flac, pcm,
    mp3, opus are kept in .mkv --, pcm_s16le for .avi, mp2 for .mpg). The output container
    follows ``out_path``'s suffix. Raises MediaError for an unreadable input or one without
    audio, OutputError for an unusable output path; on failure nothing is left behind.
    ``audio_stream_index`` picks the audio stream shifted and written (0 = first audio stream;
    None = the default one); the others are not copied.
    """
    src = check_input_file(in_path)
    if not math.isfinite(offset_ms):
        raise ValueError(f"offset_ms must be finite, got {offset_ms}")
    out = Path(out_path)
    suffix = out.suffix.lower()
    if suffix not in _FORMATS:
        kinds = ", ".join(sorted(_FORMATS))
        raise OutputError(f"Cannot write {out}: unsupported file type '{suffix}' (use {kinds}).")
    with open_input(src) as probe_c:
        if audio_stream(probe_c) is None:
            raise MediaError(f"{src} has no audio stream to shift.")
        if audio_stream(probe_c, audio_stream_index) is None:
            n = len(probe_c.streams.audio)
            raise MediaError(f"{src} has {n} audio stream(s) (0..{n - 1}); --audio-stream "
                             f"{audio_stream_index} does not exist.")
    with atomic_output(out, overwrite=overwrite, protect=[src]) as tmp:
        _remux(src, tmp, out, offset_ms, suffix, audio_stream_index)
    return out


def _remux(src: Path, tmp: Path, out_label: Path, offset_ms: float, suffix: str,
           audio_index: int | None = None) -> None:
    with open_input(src) as inp:
        vin, ain = video_stream(inp), audio_stream(inp, audio_index)
        actx = ain.codec_context
        codec = _audio_codec(suffix, actx.name)
        layout = _layout(actx, codec)
        try:
            options = {}
            if suffix in _MOV_FAMILY and vin is not None and vin.time_base:
                # Edit lists are written in the movie timescale (default 1 ms): use the video's
                # own timescale so that a delayed video start stays exact to the tick.
                options["movie_timescale"] = str(vin.time_base.denominator)
            fmt = _FORMATS[suffix]
            with av.open(str(tmp), mode="w", format=fmt, options=options) as output:
                vcodec = vin.codec_context.name if vin is not None else ""
                try:
                    if suffix in (".mpg", ".mpeg") and vin is not None:
                        if vcodec not in _MPEG_PS_VIDEO:
                            raise ValueError(f"{vcodec} video in MPEG-PS")
                    vout = output.add_stream_from_template(vin) if vin is not None else None
                    if suffix == ".avi" and vin is not None and vin.codec_context.has_b_frames:
                        raise OutputError(_avi_refusal(out_label, src))
                    if suffix == ".avi" and vin is not None and vin.average_rate:
                        vout.time_base = 1 / Fraction(vin.average_rate)  # AVI: one tick a frame
                except ValueError as exc:
                    raise OutputError(
                        f"Cannot write {out_label}: a {suffix} file cannot hold "
                        f"{vcodec} video without re-encoding; use .mkv or .mp4."
                    ) from exc
                sr_out = _pick_rate(codec, int(actx.sample_rate))
                aout = output.add_stream(codec, rate=sr_out)
                aout.codec_context.layout = layout
                aout.codec_context.time_base = Fraction(1, sr_out)
                if codec in ("aac", "libmp3lame", "libopus"):
                    channels = av.AudioLayout(layout).nb_channels
                    aout.codec_context.bit_rate = min(320_000, 96_000 * channels)
                job = _Remuxer(inp, vin, ain, output, vout, aout, layout, suffix, src, out_label)
                job.run(offset_ms)
        except AV_ERRORS as exc:
            raise OutputError(f"Cannot write {out_label}: {error_reason(exc)}.") from exc
    if suffix in _MOV_FAMILY and job.kept_end_s > job.shown_end_s + 1e-6:
        set_track_presentation_end(tmp, 0, job.shown_end_s)


def _avi_refusal(out_label: Path, src: Path) -> str:
    return (
        f"Cannot write {out_label}: the video of {src} uses B-frames, whose timing an AVI file "
        f"cannot carry exactly; write an .mkv or .mp4 instead."
    )


class _Remuxer:
    """One pass over the input: copy video packets, decode/shift/encode the audio."""

    def __init__(
        self,
        inp: Any,
        vin: Any,
        ain: Any,
        output: Any,
        vout: Any,
        aout: Any,
        layout: str,
        suffix: str,
        src: Path,
        out_label: Path,
    ) -> None:
        self.inp, self.vin, self.ain, self.output = inp, vin, ain, output
        self.vout, self.aout, self.layout = vout, aout, layout
        self.suffix, self.src, self.out_label = suffix, src, out_label
        self.sr = int(ain.codec_context.sample_rate)
        self.channels = av.AudioLayout(layout).nb_channels
        self.gate = _VideoGate(keep_leading=suffix in _MOV_FAMILY)
        self.pts0: int | None = None  # output pts (1/sr) of the first audio sample
        self.n_in = 0  # input samples (incl. filled holes) pushed into the delay line
        self.n_out = 0  # samples sent to the encoder
        self.next_s: float | None = None  # expected time of the next decoded audio sample
        self.shown_end_s = 0.0  # end of the last presented video frame (s)
        self.kept_end_s = 0.0  # end of the last copied video packet (s)
        self.resampler = self._new_resampler()
        self.bsf = None  # AVI only: annex-B for h264/hevc, or "null" (pass-through)
        if suffix == ".avi" and vin is not None:
            name = _ANNEXB.get(vin.codec_context.name, "null")
            self.bsf = av.bitstream.BitStreamFilterContext(name, vin, vout)

    def _new_resampler(self) -> Any:
        return av.AudioResampler(format="fltp", layout=self.layout, rate=self.sr)

    def run(self, offset_ms: float) -> None:
        self.delay = _DelayLine(int(round(offset_ms * self.sr / 1000.0)), self.channels)
        streams = [s for s in (self.vin, self.ain) if s is not None]
        packets = self.inp.demux(*streams)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except AV_ERRORS:  # truncated input: keep what we have, then flush
                packet = None
            if packet is not None and self.vin is not None:
                if packet.stream.index == self.vin.index:
                    self._video(packet)
                    continue
            self._audio(packet)
            if packet is None:
                break
        if self.pts0 is None:
            raise MediaError(f"No audio could be decoded from {self.src}.")
        self._feed(self.resampler.resample(None))
        self._emit(self.delay.finish())
        self.output.mux(self.aout.encode(None))

    def _video(self, packet: Any) -> None:
        if not packet.size or (packet.pts is None and packet.dts is None):
            return
        started = self.gate.started
        released = self.gate.push(packet)
        if not started and len(released) > 1 and not self.gate.keep_leading:
            raise OutputError(
                f"Cannot write {self.out_label}: the video of {self.src} is trimmed by an edit "
                f"list that a {self.suffix} file cannot represent; write an .mp4 or .mov instead."
            )
        if started and any(p.is_discard for p in released) and not self.gate.keep_leading:
            logger.warning(
                "%s: %d frame(s) hidden by the input's edit list become visible in %s",
                self.src,
                sum(p.is_discard for p in released),
                self.out_label,
            )
        for p in released:
            if self.bsf is not None and None not in (p.pts, p.dts) and p.pts != p.dts:
                raise OutputError(_avi_refusal(self.out_label, self.src))
            if p.pts is not None and p.time_base is not None:
                end = float((p.pts + (p.duration or 0)) * p.time_base)
                self.kept_end_s = max(self.kept_end_s, end)
                if not p.is_discard:
                    self.shown_end_s = max(self.shown_end_s, end)
            for q in self.bsf.filter(p) if self.bsf is not None else [p]:
                self._monotonic_dts(q)
                q.stream = self.vout
                self.output.mux(q)

    def _monotonic_dts(self, q: Any) -> None:
        """Nudge a repeated or decreasing DTS forward (as ffmpeg does when stream-copying).

        MPEG-PS inputs can carry two packets with one DTS; mp4/mov muxers refuse that.
        """
        last = getattr(self, "_last_dts", None)
        if q.dts is not None and last is not None and q.dts <= last:
            q.dts = last + 1
            if q.pts is not None and q.pts < q.dts:
                q.pts = q.dts
        if q.dts is not None:
            self._last_dts = q.dts

    def _audio(self, packet: Any) -> None:
        try:
            frames = self.ain.decode(packet)
        except AV_ERRORS:
            return
        for frame in frames:
            t = None if frame.time is None else float(frame.time)
            if self.pts0 is None:
                self.pts0 = int(round((t or 0.0) * self.sr))
            elif t is not None and self.next_s is not None and t - self.next_s > _GAP_MIN_S:
                self._feed(self.resampler.resample(None))  # a hole in the audio: keep it silent
                self.resampler = self._new_resampler()
                pad = int(round(t * self.sr)) - self.pts0 - self.n_in
                if pad > MAX_GAP_S * self.sr:
                    raise MediaError(f"Cannot read {self.src}: its audio timestamps jump by "
                                     f"{pad / self.sr:.0f} s (a damaged file).")
                if pad > 0:
                    self.n_in += pad
                    self._emit(self.delay.push(np.zeros((self.channels, pad), np.float32)))
            if t is not None and frame.sample_rate:
                self.next_s = t + frame.samples / frame.sample_rate
            try:
                self._feed(self.resampler.resample(frame))
            except ValueError:  # rate/layout changed mid-stream (a damaged header): start afresh
                self._feed(self.resampler.resample(None))
                self.resampler = self._new_resampler()
                self._feed(self.resampler.resample(frame))

    def _feed(self, frames: list[Any]) -> None:
        for f in frames:
            arr = f.to_ndarray().astype(np.float32, copy=False).reshape(self.channels, -1)
            self.n_in += arr.shape[1]
            self._emit(self.delay.push(arr))

    def _emit(self, arr: np.ndarray) -> None:
        if not arr.shape[1]:
            return
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(arr), format="fltp", layout=self.layout
        )
        frame.sample_rate = self.sr
        frame.pts = self.pts0 + self.n_out
        frame.time_base = Fraction(1, self.sr)
        self.n_out += arr.shape[1]
        self.output.mux(self.aout.encode(frame))
