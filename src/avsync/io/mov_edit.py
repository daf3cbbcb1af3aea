"""Shorten the edit list of one track of an MP4/MOV file in place (no re-muxing).

When stream-copying a video whose edit list hides frames at its END, some hidden packets must
be kept because presented frames reference them. The mov muxer presents every copied packet up
to the largest ``pts + duration``, so these frames would reappear. This module rewrites the
duration of the track's last ``elst`` entry so that presentation stops where the input's did,
exactly as ffmpeg's demuxer then reads it (frames past the edit are flagged discard).
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

_CONTAINERS = {b"moov", b"trak", b"edts", b"mdia", b"minf", b"stbl"}


def _boxes(buf: bytes | bytearray, start: int, end: int):
    """Yield (type, box_start, body_start, box_end) for the boxes in ``buf[start:end]``."""
    off = start
    while off + 8 <= end:
        size, kind = struct.unpack(">I4s", buf[off : off + 8])
        body = off + 8
        if size == 1:
            size = struct.unpack(">Q", buf[off + 8 : off + 16])[0]
            body = off + 16
        elif size == 0:
            size = end - off
        if size < 8 or off + size > end:
            return
        yield kind, off, body, off + size
        off += size


def _find_moov(path: Path) -> tuple[int, int] | None:
    """(offset, size) of the top-level moov box, read without loading the media data."""
    with path.open("rb") as f:
        f.seek(0, 2)
        total = f.tell()
        off = 0
        while off + 8 <= total:
            f.seek(off)
            head = f.read(16)
            size, kind = struct.unpack(">I4s", head[:8])
            if size == 1:
                size = struct.unpack(">Q", head[8:16])[0]
            elif size == 0:
                size = total - off
            if size < 8:
                return None
            if kind == b"moov":
                return off, size
            off += size
    return None


def set_track_presentation_end(path: Path, track_index: int, end_s: float) -> bool:
    """Make track ``track_index`` (0-based, file order) stop presenting at ``end_s`` seconds.

    The end is rounded down to the movie timescale, so a hidden frame starting exactly at
    ``end_s`` stays hidden. Only ever shortens the last edit. Returns True if the file changed.
    """
    found = _find_moov(path)
    if found is None:
        return False
    moov_off, moov_size = found
    with path.open("r+b") as f:
        f.seek(moov_off)
        buf = bytearray(f.read(moov_size))
        movie_scale = None
        traks = []
        for kind, _, body, end in _boxes(buf, 8, len(buf)):
            if kind == b"mvhd":
                version = buf[body]
                at = body + (20 if version == 1 else 12)
                movie_scale = struct.unpack(">I", buf[at : at + 4])[0]
            elif kind == b"trak":
                traks.append((body, end))
        if not movie_scale or track_index >= len(traks):
            return False
        elst = None
        for kind, _, body, end in _boxes(buf, *traks[track_index]):
            if kind == b"edts":
                elst = next(((b, e) for k, _, b, e in _boxes(buf, body, end) if k == b"elst"), None)
        if elst is None:
            return False
        body, _ = elst
        version = buf[body]
        count = struct.unpack(">I", buf[body + 4 : body + 8])[0]
        entry = 20 if version == 1 else 12
        if count < 1:
            return False
        durations = []
        for i in range(count):
            at = body + 8 + i * entry
            fmt = ">Q" if version == 1 else ">I"
            durations.append((at, struct.unpack(fmt, buf[at : at + (8 if version == 1 else 4)])[0]))
        last_at, last = durations[-1]
        before = sum(d for _, d in durations[:-1])
        new = math.floor(end_s * movie_scale + 1e-9) - before
        if new <= 0 or new >= last:
            return False
        buf[last_at : last_at + (8 if version == 1 else 4)] = struct.pack(
            ">Q" if version == 1 else ">I", new
        )
        f.seek(moov_off)
        f.write(buf)
    return True
