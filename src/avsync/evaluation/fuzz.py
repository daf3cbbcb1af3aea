"""Seeded mutation fuzzing of media files: hostile inputs for ``avsync detect`` and ``fix``.

A *mutation* takes the bytes of a valid seed file and a ``random.Random`` and returns damaged
bytes. Every mutation is reproducible from (seed file, mutator name, integer seed). Mutators:

* ``bitflip``: 1..64 random bits flipped anywhere; ``byterun``: a run of 16..4096 bytes set to
  zeros, 0xFF or noise;
* ``trunc10`` .. ``trunc90``: the file cut at 10 %, 20 %, .. 90 % of its length;
* ``header``: 8..64 random bytes of the first KiB replaced by noise;
* ``index``: the container's index damaged -- mp4/mov ``moov``/``stco``/``stsz``/``stts``/``stss``
  boxes, Matroska/WebM ``Cues``/``SeekHead`` and EBML size fields, AVI ``idx1``, MPEG-PS pack
  and PES headers;
* ``dims``: absurd width/height (0, 1, 0xFFFF.., noise) written into the known fields (mp4
  ``tkhd`` and sample entry, Matroska ``PixelWidth/Height``, AVI ``avih``/``strf``, MPEG
  sequence header);
* ``time``: absurd timing (timescales, durations, frame rates, timestamps set to 0, 1 or huge).

When a container-aware mutator finds no field it knows, it falls back to ``byterun`` in the
first tenth of the file, so every mutated file differs from its seed. The runner that feeds the
files to the CLI is :mod:`avsync.evaluation.fuzz_run`.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from pathlib import Path

Field = tuple[int, int]  # (byte offset, length)

TRUNC_PERCENTS = tuple(range(10, 100, 10))
_EBML_MASTERS = {
    0x1A45DFA3, 0x18538067, 0x1654AE6B, 0xAE, 0xE0, 0xE1, 0x1549A966, 0x114D9B74, 0x4DBB,
    0x1C53BB6B, 0xBB, 0xB7, 0x1F43B675, 0xA0,
}
_MKV_INDEX = {0x1C53BB6B, 0x114D9B74, 0xBB, 0xB7, 0x4DBB, 0x53AC, 0xB3, 0xF1, 0xF7}
_MKV_DIMS = {0xB0, 0xBA, 0x54B0, 0x54BA}  # PixelWidth/Height, DisplayWidth/Height
_MKV_TIME = {0x2AD7B1, 0x4489, 0xE7, 0x23E383, 0xB3}  # TimestampScale, Duration, Cluster ts, ...


# ----------------------------------------------------------------------------- field finders


def _find_all(data: bytes, pattern: bytes, limit: int = 64) -> list[int]:
    out, i = [], data.find(pattern)
    while i >= 0 and len(out) < limit:
        out.append(i)
        i = data.find(pattern, i + 1)
    return out


def _mp4_box(data: bytes, kind: bytes) -> list[int]:
    """Offsets of the 4-char type code of each ``kind`` box whose size field looks sane."""
    found = []
    for p in _find_all(data, kind):
        if p >= 4:
            size = struct.unpack(">I", data[p - 4 : p])[0]
            if size in (0, 1) or 8 <= size <= len(data) - p + 4:
                found.append(p)
    return found


def _mp4_fields(data: bytes, what: str) -> list[Field]:
    f: list[Field] = []
    if what == "index":
        for kind in (b"moov", b"trak", b"stbl", b"stco", b"co64", b"stsz", b"stsc", b"stts", b"stss"):
            for p in _mp4_box(data, kind):
                f.append((p - 4, 4))  # the box size
                if kind not in (b"moov", b"trak", b"stbl"):
                    f += [(p + 8, 4), (p + 12, 4), (p + 16, 4)]  # count and first entries
    elif what == "dims":
        for p in _mp4_box(data, b"tkhd"):
            base = p + 80 + (12 if data[p + 4] == 1 else 0)
            f += [(base, 4), (base + 4, 4)]
        for kind in (b"avc1", b"hvc1", b"mp4v", b"vp09"):
            f += [(p + 28, 2) for p in _mp4_box(data, kind)] + [(p + 30, 2) for p in _mp4_box(data, kind)]
    elif what == "time":
        for kind in (b"mvhd", b"mdhd"):
            for p in _mp4_box(data, kind):
                off = 12 if data[p + 4] == 1 else 0
                f += [(p + 16 + off, 4), (p + 20 + off, 4 + off // 3)]  # timescale, duration
        for kind in (b"stts", b"ctts", b"elst"):
            f += [(p + 16, 4) for p in _mp4_box(data, kind)] + [(p + 12, 4) for p in _mp4_box(data, kind)]
    return [x for x in f if x[0] >= 0 and x[0] + x[1] <= len(data)]


def _vint(data: bytes, pos: int, keep_marker: bool) -> tuple[int, int] | None:
    """An EBML variable-length integer at ``pos``: (value, length) or None."""
    if pos >= len(data) or data[pos] == 0:
        return None
    first = data[pos]
    length = 8 - first.bit_length() + 1
    if pos + length > len(data):
        return None
    value = first if keep_marker else first & ((1 << (8 - length)) - 1)
    for b in data[pos + 1 : pos + length]:
        value = (value << 8) | b
    return value, length


def _ebml_elements(data: bytes, budget: int = 20000) -> list[tuple[int, int, int, int, int]]:
    """Walk the EBML tree: (id, start, size_pos, size_len, data_pos) of each element."""
    out: list[tuple[int, int, int, int, int]] = []
    stack = [(0, len(data))]
    while stack and len(out) < budget:
        pos, end = stack.pop()
        while pos < end and len(out) < budget:
            eid = _vint(data, pos, keep_marker=True)
            size = _vint(data, pos + eid[1], keep_marker=False) if eid else None
            if eid is None or size is None:
                break
            size_pos, data_pos = pos + eid[1], pos + eid[1] + size[1]
            out.append((eid[0], pos, size_pos, size[1], data_pos))
            unknown = size[0] == (1 << (7 * size[1])) - 1
            stop = end if unknown else min(end, data_pos + size[0])
            if eid[0] in _EBML_MASTERS:
                stack.append((stop, end))
                pos, end = data_pos, stop
                continue
            pos = stop
    return out


def _mkv_fields(data: bytes, what: str) -> list[Field]:
    f: list[Field] = []
    for eid, _start, size_pos, size_len, data_pos in _ebml_elements(data):
        if what == "index" and (eid in _MKV_INDEX or eid in _EBML_MASTERS):
            f.append((size_pos, size_len))
        elif what == "dims" and eid in _MKV_DIMS:
            f.append((data_pos, max(1, data_pos - size_pos)))
        elif what == "time" and eid in _MKV_TIME:
            f.append((data_pos, 2))
        elif what == "time" and eid == 0xA3:  # SimpleBlock: track vint, then a 16-bit timestamp
            f.append((data_pos + 1, 2))
    return [x for x in f if x[0] + x[1] <= len(data)]


def _avi_fields(data: bytes, what: str) -> list[Field]:
    f: list[Field] = []
    if what == "index":
        for p in _find_all(data, b"idx1", 2):
            f += [(p + 4, 4), (p + 16, 4), (p + 24, 4), (p + 40, 4)]
        f += [(p + 4, 4) for p in _find_all(data, b"LIST", 8)]
    elif what == "dims":
        f += [(p + 8 + 32, 4) for p in _find_all(data, b"avih", 2)]
        f += [(p + 8 + 36, 4) for p in _find_all(data, b"avih", 2)]
        f += [(p + k, 4) for p in _find_all(data, b"strf", 4) for k in (12, 16)]
    elif what == "time":
        f += [(p + 8, 4) for p in _find_all(data, b"avih", 2)]  # microseconds per frame
        for p in _find_all(data, b"strh", 4):
            f += [(p + 28, 4), (p + 32, 4), (p + 40, 4)]  # scale, rate, length
    return [x for x in f if x[0] + x[1] <= len(data)]


def _mpg_fields(data: bytes, what: str) -> list[Field]:
    f: list[Field] = []
    if what == "index":
        f += [(p + 4, 6) for p in _find_all(data, b"\x00\x00\x01\xba", 32)]  # SCR
        f += [(p + 4, 2) for p in _find_all(data, b"\x00\x00\x01\xe0", 32)]  # PES length
        f += [(p + 4, 2) for p in _find_all(data, b"\x00\x00\x01\xc0", 32)]
    elif what == "dims":
        f += [(p + 4, 3) for p in _find_all(data, b"\x00\x00\x01\xb3", 8)]
    elif what == "time":
        for code in (b"\x00\x00\x01\xe0", b"\x00\x00\x01\xc0"):
            f += [(p + 9, 5) for p in _find_all(data, code, 32)]  # PTS
        f += [(p + 7, 1) for p in _find_all(data, b"\x00\x00\x01\xb3", 8)]  # frame rate code
    return [x for x in f if x[0] + x[1] <= len(data)]


def _fields(data: bytes, what: str) -> list[Field]:
    if data[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide"):
        return _mp4_fields(data, what)
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return _mkv_fields(data, what)
    if data[:4] == b"RIFF":
        return _avi_fields(data, what)
    if data[:4] == b"\x00\x00\x01\xba":
        return _mpg_fields(data, what)
    return []


# ----------------------------------------------------------------------------- mutators


def _absurd(rng: random.Random, length: int) -> bytes:
    kind = rng.choice(("zero", "one", "max", "noise", "half"))
    if kind == "zero":
        return bytes(length)
    if kind == "one":
        return bytes(length - 1) + b"\x01"
    if kind == "max":
        return b"\xff" * length
    if kind == "half":
        return b"\x7f" + b"\xff" * (length - 1)
    return rng.randbytes(length)


def bitflip(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 64)):
        buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
    return bytes(buf)


def byterun(data: bytes, rng: random.Random, lo: int = 0, hi: int | None = None) -> bytes:
    hi = len(data) if hi is None else hi
    n = min(rng.randint(16, 4096), max(1, hi - lo))
    start = rng.randrange(lo, max(lo + 1, hi - n + 1))
    fill = rng.choice((bytes(n), b"\xff" * n, rng.randbytes(n)))
    return data[:start] + fill + data[start + n :]


def header(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(8, 64)):
        buf[rng.randrange(min(1024, len(buf)))] = rng.randrange(256)
    return bytes(buf)


def _field_mutator(what: str) -> Callable[[bytes, random.Random], bytes]:
    def mutate(data: bytes, rng: random.Random) -> bytes:
        fields = _fields(data, what)
        if not fields:
            return byterun(data, rng, 0, max(32, len(data) // 10))
        buf = bytearray(data)
        for off, length in rng.sample(fields, min(len(fields), rng.randint(1, 3))):
            buf[off : off + length] = _absurd(rng, length)
        return bytes(buf)

    mutate.__name__ = what
    return mutate


def _truncate(percent: int) -> Callable[[bytes, random.Random], bytes]:
    def mutate(data: bytes, rng: random.Random) -> bytes:
        return data[: len(data) * percent // 100]

    return mutate


MUTATORS: dict[str, Callable[[bytes, random.Random], bytes]] = {
    "bitflip": bitflip,
    "byterun": byterun,
    "header": header,
    "index": _field_mutator("index"),
    "dims": _field_mutator("dims"),
    "time": _field_mutator("time"),
    **{f"trunc{p}": _truncate(p) for p in TRUNC_PERCENTS},
}
"""Mutator name -> ``f(data, rng) -> mutated bytes``."""


def mutate_file(seed_path: Path, mutator: str, seed: int, out_path: Path) -> Path:
    """Write ``out_path``: ``seed_path`` damaged by ``MUTATORS[mutator]`` with RNG ``seed``."""
    data = Path(seed_path).read_bytes()
    rng = random.Random(f"{Path(seed_path).name}:{mutator}:{seed}")
    out = MUTATORS[mutator](data, rng)
    if out == data:  # a no-op mutation (e.g. noise equal to the old bytes): force a change
        out = bitflip(data, rng)
    Path(out_path).write_bytes(out)
    return Path(out_path)


# ----------------------------------------------------------------------------- seed files

CONTAINERS = ("mp4", "mkv", "avi", "mpg", "mov", "webm")
_FFMPEG_CODECS = {
    "mp4": ["-c:v", "libx264", "-preset", "veryfast", "-crf", "30", "-c:a", "aac"],
    "mov": ["-c:v", "libx264", "-preset", "veryfast", "-crf", "30", "-c:a", "aac"],
    "mkv": ["-c:v", "libx264", "-preset", "veryfast", "-crf", "30", "-c:a", "libopus"],
    "avi": ["-c:v", "mpeg4", "-q:v", "8", "-c:a", "libmp3lame"],
    "mpg": ["-c:v", "mpeg1video", "-q:v", "8", "-c:a", "mp2"],
    "webm": ["-c:v", "libvpx", "-b:v", "300k", "-deadline", "realtime", "-c:a", "libopus"],
}


def make_seeds(src: Path, folder: Path, duration_s: float = 2.0,
               containers: tuple[str, ...] = CONTAINERS) -> dict[str, Path]:
    """Transcode the first ``duration_s`` seconds of ``src`` into one seed file per container.

    Uses the ``ffmpeg`` binary when it is on PATH (all six containers); otherwise PyAV through
    :func:`avsync.io.write_av` (no webm). Returns {container: path} for those written.
    """
    import shutil
    import subprocess

    folder.mkdir(parents=True, exist_ok=True)
    ffmpeg = shutil.which("ffmpeg")
    seeds: dict[str, Path] = {}
    frames = audio = None
    for kind in containers:
        out = folder / f"{Path(src).stem}.{kind}"
        if ffmpeg:
            cmd = [ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-t", f"{duration_s:g}", "-i",
                   str(src), *_FFMPEG_CODECS[kind], "-ar", "48000" if kind in ("mkv", "webm") else "44100",
                   str(out)]
            if subprocess.run(cmd, capture_output=True, timeout=120).returncode == 0:
                seeds[kind] = out
            continue
        if kind == "webm":
            continue
        if frames is None:
            frames, fps, audio, sr = _decode_head(Path(src), duration_s)
        from avsync.io import write_av

        seeds[kind] = write_av(out, frames, fps, audio, sample_rate_hz=sr)
    return seeds


def _decode_head(src: Path, duration_s: float):
    import numpy as np

    from avsync.io import iter_video_frames, load_audio, probe

    fps = probe(src).fps
    frames = np.stack([f.image for f in iter_video_frames(src, max_side=None)
                       if f.time_s < duration_s - 0.5 / fps])
    track = load_audio(src)
    audio = track.samples[: int(duration_s * track.sample_rate_hz)]
    return frames, fps, audio, track.sample_rate_hz
