"""Expand batch INPUTS (files, folders, globs, manifests) into a list of :class:`BatchInput`.

A manifest is a ``.jsonl`` with a ``path`` key per line, or a ``.tsv``/``.csv`` with a ``path``
column (as ``avsync prepare --layout`` and the shared ``MANIFEST.tsv`` write them); relative
paths are relative to the manifest's folder. Folders are searched recursively for media files.
A manifest's ``duration_s`` column, when present, is kept as the input's duration hint (the
scheduler runs the longest inputs first; see :mod:`avsync.batch.schedule`).
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from avsync.errors import AvsyncError
from avsync.evaluation.clips import MEDIA_SUFFIXES

MANIFEST_SUFFIXES = (".jsonl", ".tsv", ".csv")
META_KEYS = ("speaker", "source", "split")
"""Manifest columns carried through to a ``--keep`` manifest (so prepare/train still see them)."""


@dataclass(frozen=True)
class BatchInput:
    """One file to measure. ``input_id`` names this version of the file: a hash of its absolute
    path, size and mtime, so a changed file is measured again on ``--resume``. ``duration_s``:
    a hint for scheduling only (from a manifest, or probed), None when unknown."""

    path: str
    input_id: str
    size_bytes: int = -1
    meta: dict = field(default_factory=dict, compare=False, hash=False)
    duration_s: float | None = field(default=None, compare=False, hash=False)


def input_id(path: str, size_bytes: int, mtime_ns: int) -> str:
    """16 hex digits identifying (absolute path, size, mtime)."""
    return hashlib.sha1(f"{path}\0{size_bytes}\0{mtime_ns}".encode()).hexdigest()[:16]


def make_input(path: str | Path, meta: dict | None = None, duration_s: float | None = None) -> BatchInput:
    """A BatchInput for ``path`` (made absolute, symlinks kept); a missing file still gets an
    id (from its path) so that its error line is written once and skipped on resume."""
    p = os.path.abspath(os.fspath(path))
    try:
        st = os.stat(p)
        size, mtime = st.st_size, st.st_mtime_ns
    except OSError:
        size, mtime = -1, -1
    return BatchInput(p, input_id(p, size, mtime), size, dict(meta or {}), duration_s)


def _duration_hint(value: object) -> float | None:
    """A manifest's duration_s cell as a positive finite float, else None (never an error)."""
    try:
        d = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return d if 0 < d < float("inf") else None


def _manifest_rows(path: Path) -> list[dict]:
    try:
        if path.suffix == ".jsonl":
            rows = []
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise AvsyncError(f"{path}:{n}: not a JSON line ({exc.msg})") from exc
        else:
            with open(path, newline="", encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh, delimiter="\t" if path.suffix == ".tsv" else ","))
    except (OSError, UnicodeDecodeError) as exc:
        raise AvsyncError(f"{path}: cannot read the manifest ({exc})") from exc
    if rows and not all(isinstance(r, dict) and r.get("path") for r in rows):
        raise AvsyncError(f"{path}: every manifest row needs a 'path'")
    return rows


def _from_manifest(path: Path) -> list[BatchInput]:
    out = []
    for row in _manifest_rows(path):
        p = Path(str(row["path"]))
        meta = {k: row[k] for k in META_KEYS if row.get(k) not in (None, "")}
        out.append(make_input(p if p.is_absolute() else path.parent / p, meta,
                              _duration_hint(row.get("duration_s"))))
    return out


def _from_folder(folder: Path) -> list[BatchInput]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in MEDIA_SUFFIXES and p.is_file())
    return [make_input(p) for p in files]


def _is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def check_specs(specs: list[str | Path]) -> None:
    """The cheap part of :func:`expand_inputs`'s checks (each spec exists or is a glob), so that
    a typo fails before any worker is started."""
    for spec in specs:
        text = os.fspath(spec)
        if not (os.path.exists(text) or _is_glob(text)):
            raise AvsyncError(f"{text}: no such file, folder or manifest")


def count_bound(specs: list[str | Path]) -> int | None:
    """How many inputs ``specs`` can give at most, when that is known without listing (every
    spec a plain media file); None for folders, globs and manifests."""
    for spec in specs:
        p = Path(os.fspath(spec))
        if not p.is_file() or p.suffix.lower() in MANIFEST_SUFFIXES:
            return None
    return len(specs)


def expand_inputs(specs: list[str | Path]) -> list[BatchInput]:
    """Files, folders, globs and manifests -> unique inputs in a stable order (first wins).

    A file that is not a manifest is taken as media whatever its extension (detect then says
    whether it can read it); a spec that matches nothing raises AvsyncError.
    """
    found: list[BatchInput] = []
    for spec in specs:
        text = os.fspath(spec)
        p = Path(text)
        if p.is_dir():
            items = _from_folder(p)
        elif p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES:
            items = _from_manifest(p)
        elif p.is_file():
            items = [make_input(p)]
        elif _is_glob(text):
            items = []
            for m in sorted(glob.glob(text, recursive=True)):
                items.extend(expand_inputs([m]))
        else:
            raise AvsyncError(f"{text}: no such file, folder or manifest")
        if not items and (p.is_dir() or _is_glob(text)):
            raise AvsyncError(f"{text}: no media files found")
        found.extend(items)
    seen: set[str] = set()
    unique = []
    for item in found:
        if item.path not in seen:
            seen.add(item.path)
            unique.append(item)
    return unique
