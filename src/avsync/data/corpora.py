"""Clip lists of the standard lip-reading corpora (LRS2, LRS3, VoxCeleb2, GRID) with their splits.

:func:`scan_corpus` walks a corpus as distributed and returns one :class:`CorpusClip` per video,
with its speaker (or the best grouping key the corpus offers) and its split as the corpus defines
it; :func:`write_manifest` stores them as a JSON Lines manifest that is at once a clip list for
``avsync prepare`` / :func:`avsync.evaluation.clips.load_clips` and the split file of
``benchmarks/train.py``.

Usage::

    avsync prepare --layout auto --clips /data/LRS3 --out cache/lrs3 [--limit 500] [--workers 8]
    # -> cache/lrs3/manifest.jsonl (every clip, with its split) and the cache of the
    #    train/val/pretrain clips (test clips are listed but not cached)
    python benchmarks/train.py --cache cache/lrs3 --split cache/lrs3/manifest.jsonl --method syncnet ...

    from avsync.data.corpora import scan_corpus, write_manifest
    write_manifest(scan_corpus("/data/GRID", "grid"), "grid.jsonl")

Layouts (speaker / group key, splits):

``lrs2``  ``ROOT/{main,pretrain}/<video_id>/<clip>.mp4`` with the official lists ``ROOT/train.txt``,
    ``val.txt``, ``test.txt`` (lines ``<video_id>/<clip>``, test lines may end in `` NF`` / `` MV``).
    LRS2 has no speaker ids: the group key is the video id (one BBC programme), so the clips of a
    programme stay together but a presenter may appear in several programmes, hence on both sides.
    ``main`` clips in no list are left out; ``pretrain`` clips are split "pretrain" (val is
    carved only when there is no val.txt).
``lrs3``  ``ROOT/{pretrain,trainval,test}/<youtube_id>/<clip>.mp4``; group = the YouTube id (one TED
    talk, about one speaker). ``test`` is the official test set; val is carved from the groups.
``voxceleb2``  ``ROOT/{dev,test}/mp4/<id00012>/<youtube_id>/<clip>.mp4``; speaker = the ``id`` folder;
    dev is train (val carved from it), test is test (disjoint speakers). Only the ``mp4`` copies
    (video with audio) are read: the separate ``aac/*.m4a`` audio copies are not used.
``grid``  ``ROOT/s<N>/<utt>.mpg`` (or ``video/s<N>/...``, ``s<N>/video/mpg_6000/...``, any depth):
    speaker = the last ``s<digits>`` folder of the path. All clips are train (val carved). A
    separate ``<utt>.wav`` of the same speaker (``audio_25k/s<N>/``, ``s<N>/audio/``) is recorded
    as the row's ``"audio"``, but nothing muxes it yet: only videos with their own audio stream
    can be cached today (the others are skipped with a warning by ``build_cache``).

Carved validation sets (LRS3, VoxCeleb2, GRID): a group is on the val side when a stable hash of
its key falls below ``val_fraction``, so adding files never moves a group; LRS3 ``pretrain`` clips
of a val group are put on the val side too (no talk in val is ever trained on). When the hash puts
no group (or every group) on the val side, the group with the smallest (largest) hash is moved.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from avsync.errors import AvsyncError
from avsync.evaluation.clips import MEDIA_SUFFIXES, Clip

LAYOUTS: tuple[str, ...] = ("auto", "lrs2", "lrs3", "voxceleb2", "grid")
"""Layouts :func:`scan_corpus` knows ("auto" detects one of the others from the tree)."""

SPLITS: tuple[str, ...] = ("train", "val", "test", "pretrain")
"""Split names of :class:`CorpusClip`, in report order."""

VAL_FRACTION: float = 0.1
"""Default share of the groups carved into val where a corpus has no official val split."""

_GRID_SPEAKER = re.compile(r"^s\d+$")
_VOX_SPEAKER = re.compile(r"^id\d+$")
_AUDIO_SUFFIXES = {".wav", ".flac"}


@dataclass(frozen=True)
class CorpusClip:
    """One corpus video: speaker (or group key), source (the layout) and split.

    split is "train" | "val" | "test" | "pretrain"; audio is a separate audio file of the same
    utterance when the corpus ships one (GRID), else None.
    """

    path: Path
    speaker: str
    source: str
    split: str
    audio: Path | None = None

    def as_clip(self) -> Clip:
        """The :class:`avsync.evaluation.clips.Clip` of this clip (for ``build_cache``)."""
        return Clip(self.path, self.speaker, self.source)


def _media(root: Path, suffixes: Iterable[str] = MEDIA_SUFFIXES) -> list[Path]:
    """Media files under ``root`` (any depth, hidden names skipped), sorted."""
    allowed = set(suffixes)
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found.extend(Path(folder, f) for f in files
                     if not f.startswith(".") and Path(f).suffix.lower() in allowed)
    return sorted(found)


def _rel_parts(path: Path, root: Path) -> tuple[str, ...]:
    return path.relative_to(root).parts


def _key_hash(key: str) -> float:
    """A stable number in [0, 1) for a group key (independent of the other keys)."""
    return int.from_bytes(hashlib.sha1(key.encode("utf-8")).digest()[:8], "big") / 2.0**64


def carve_val(clips: Sequence[CorpusClip], val_fraction: float = VAL_FRACTION) -> list[CorpusClip]:
    """Move whole speaker groups of the train (and pretrain) clips to "val", by a stable hash.

    A group goes to val when the hash of ``source:speaker`` is below ``val_fraction``; that does
    not depend on the other groups, except for the fallback when the hash leaves one side empty
    (then the group with the smallest / largest hash is moved; a single group stays train).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise AvsyncError(f"val_fraction must be in [0, 1), got {val_fraction}")
    score = {c.speaker: _key_hash(f"{c.source}:{c.speaker}") for c in clips if c.split == "train"}
    if not score or val_fraction == 0.0:
        return list(clips)
    keys = sorted(score, key=lambda k: (score[k], k))
    val = {k for k in keys if score[k] < val_fraction}
    if not val and len(keys) > 1:
        val = {keys[0]}
    if len(val) == len(keys):
        val.discard(keys[-1])
    return [replace(c, split="val") if c.split in ("train", "pretrain") and c.speaker in val else c
            for c in clips]


def _split_list(path: Path) -> set[str]:
    """Entries ``<video_id>/<clip>`` of an LRS2 list file (trailing tokens, ``main/``, ``.mp4`` cut)."""
    if not path.is_file():
        return set()
    out = set()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.split():
            entry = line.split()[0].strip("/")
            entry = entry.removeprefix("main/").removeprefix("pretrain/")
            out.add(entry.removesuffix(".mp4"))
    return out


def scan_lrs2(root: Path) -> list[CorpusClip]:
    """LRS2: ``main`` clips split by the official lists, ``pretrain`` clips are "pretrain"."""
    lists = {s: _split_list(root / f"{s}.txt") for s in ("train", "val", "test")}
    if (root / "main").is_dir() and not any(lists.values()):
        raise AvsyncError(f"{root}: LRS2 main/ found but no train.txt / val.txt / test.txt list")
    side = {e: s for s, entries in lists.items() for e in entries}
    clips = []
    for part in ("main", "pretrain"):
        for p in _media(root / part):
            rel = _rel_parts(p, root / part)
            if len(rel) < 2:
                continue
            split = "pretrain" if part == "pretrain" else side.get(f"{rel[-2]}/{Path(rel[-1]).stem}")
            if split is not None:
                clips.append(CorpusClip(p, rel[-2], "lrs2", split))
    return clips


def scan_lrs3(root: Path) -> list[CorpusClip]:
    """LRS3: trainval is train, pretrain and test as the folders say (by YouTube id)."""
    clips = []
    for part, split in (("pretrain", "pretrain"), ("trainval", "train"), ("test", "test")):
        for p in _media(root / part):
            rel = _rel_parts(p, root / part)
            if len(rel) >= 2:
                clips.append(CorpusClip(p, rel[-2], "lrs3", split))
    return clips


def scan_voxceleb2(root: Path) -> list[CorpusClip]:
    """VoxCeleb2: dev is train, test is test; speaker = the ``id`` folder."""
    clips = []
    for part, split in (("dev", "train"), ("test", "test")):
        for p in _media(root / part):
            speaker = next((s for s in _rel_parts(p, root / part)[:-1] if _VOX_SPEAKER.match(s)), None)
            if speaker is not None:
                clips.append(CorpusClip(p, speaker, "voxceleb2", split))
    return clips


def _grid_speaker(path: Path, root: Path) -> str | None:
    """The last ``s<digits>`` folder of ``path`` below ``root`` (None when there is none)."""
    return next((s for s in reversed(_rel_parts(path, root)[:-1]) if _GRID_SPEAKER.match(s)), None)


def scan_grid(root: Path) -> list[CorpusClip]:
    """GRID: every video under an ``s<N>`` folder is train; its same-name wav is ``audio``."""
    wavs: dict[tuple[str, str], Path] = {}
    for w in _media(root, _AUDIO_SUFFIXES):
        speaker = _grid_speaker(w, root)
        if speaker is not None:
            wavs.setdefault((speaker, w.stem), w)
    clips = []
    for p in _media(root):
        speaker = _grid_speaker(p, root)
        if speaker is not None:
            clips.append(CorpusClip(p, speaker, "grid", "train", wavs.get((speaker, p.stem))))
    return clips


def _has_grid_speaker(root: Path, depth: int = 3) -> bool:
    """True when a folder named ``s<digits>`` lies within ``depth`` levels below ``root``."""
    level = [root]
    for _ in range(depth):
        level = [d for f in level for d in sorted(f.iterdir()) if d.is_dir()]
        if any(_GRID_SPEAKER.match(d.name) for d in level):
            return True
    return False


def detect_layout(root: str | Path) -> str:
    """The layout of a corpus tree ("lrs2", "lrs3", "voxceleb2" or "grid"); AvsyncError otherwise."""
    r = Path(root)
    if not r.is_dir():
        raise AvsyncError(f"{r}: not a folder (the corpus root is needed)")
    if (r / "main").is_dir():
        return "lrs2"
    if (r / "trainval").is_dir() or ((r / "pretrain").is_dir() and (r / "test").is_dir()):
        return "lrs3"
    if (r / "dev").is_dir() or (r / "test" / "mp4").is_dir():
        return "voxceleb2"
    if _has_grid_speaker(r):
        return "grid"
    raise AvsyncError(f"{r}: unknown corpus layout (expected LRS2 main/, LRS3 trainval/, VoxCeleb2 "
                      "dev/ or GRID s<N>/ folders); pass --layout or --layout none")


_SCANNERS: dict[str, Callable[[Path], list[CorpusClip]]] = {
    "lrs2": scan_lrs2,
    "lrs3": scan_lrs3,
    "voxceleb2": scan_voxceleb2,
    "grid": scan_grid,
}


def _limited(clips: list[CorpusClip], limit: int) -> list[CorpusClip]:
    """At most ``limit`` clips, taken round-robin over the splits (each in path order)."""
    if limit <= 0 or len(clips) <= limit:
        return clips
    queues = [[c for c in clips if c.split == s] for s in SPLITS]
    picked: list[CorpusClip] = []
    for i in range(max(len(q) for q in queues)):
        picked.extend(q[i] for q in queues if i < len(q))
    return sorted(picked[:limit], key=lambda c: c.path.as_posix())


def scan_corpus(root: str | Path, layout: str = "auto", limit: int = 0,
                val_fraction: float = VAL_FRACTION) -> list[CorpusClip]:
    """Every clip of a corpus tree, sorted by path, with speaker/group key and split.

    layout: one of LAYOUTS ("auto" detects it). limit > 0 keeps that many clips, round-robin
    over the splits (the splits themselves never depend on the limit). val_fraction: share of
    the speaker groups carved into val (:func:`carve_val`) when the corpus has no val clip
    (LRS3, VoxCeleb2, GRID; LRS2 without val.txt). Raises AvsyncError (one line) for an
    unknown layout, a missing root or no clips.
    """
    r = Path(root)
    if layout not in LAYOUTS:
        raise AvsyncError(f"unknown corpus layout {layout!r} (choose from {', '.join(LAYOUTS)})")
    if not r.is_dir():
        raise AvsyncError(f"{r}: not a folder (the corpus root is needed)")
    name = detect_layout(r) if layout == "auto" else layout
    clips = _SCANNERS[name](r)
    if not clips:
        raise AvsyncError(f"{r}: no {name} clips found (video files in the {name} folder layout)")
    if not any(c.split == "val" for c in clips):
        clips = carve_val(clips, val_fraction)
    return _limited(sorted(clips, key=lambda c: c.path.as_posix()), limit)


def _row_path(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` when inside it (both resolved), else absolute and resolved.

    Resolved like the ``path`` stored in cache files, so that benchmarks/train.py matches the
    row to the cache file by path suffix.
    """
    full = path.resolve()
    try:
        return full.relative_to(base.resolve()).as_posix()
    except ValueError:
        return full.as_posix()


def write_manifest(clips: Sequence[CorpusClip], out_jsonl: str | Path) -> Path:
    """Write ``clips`` as JSON Lines (atomic; replaces the file; creates its folder).

    Rows ``{"path", "speaker", "source", "split"}`` plus ``"audio"`` when the clip has a
    separate audio file; paths are relative to the manifest's folder when inside it, else
    absolute. Readable by ``load_clips`` and as ``benchmarks/train.py --split`` (which uses the
    train/val rows and ignores the others).
    """
    from avsync.io import atomic_output

    out = Path(out_jsonl)
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for c in clips:
        row = {"path": _row_path(c.path, out.parent), "speaker": c.speaker, "source": c.source,
               "split": c.split}
        if c.audio is not None:
            row["audio"] = _row_path(c.audio, out.parent)
        lines.append(json.dumps(row))
    with atomic_output(out, overwrite=True) as tmp:
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return out


def corpus_summary(clips: Sequence[CorpusClip]) -> str:
    """One line: clips and speakers (groups) per split, e.g. ``train 90 clips/9 speakers; ...``."""
    parts = []
    for s in SPLITS:
        part = [c for c in clips if c.split == s]
        if part:
            parts.append(f"{s} {len(part)} clips/{len({c.speaker for c in part})} speakers")
    source = clips[0].source if clips else "corpus"
    return f"{source}: " + ("; ".join(parts) if parts else "no clips")
