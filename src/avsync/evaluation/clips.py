"""Clip sets for evaluation: a folder, the shared MANIFEST.tsv, or a JSON Lines manifest."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from avsync.errors import AvsyncError

MEDIA_SUFFIXES = {".mp4", ".mkv", ".avi", ".mov", ".mpg", ".mpeg", ".webm", ".m4v", ".flv"}


@dataclass(frozen=True)
class Clip:
    """One in-sync clip. speaker groups clips for speaker-split reports; source for flags."""

    path: Path
    speaker: str
    source: str


def _speaker_from_manifest(row: dict) -> str:
    guess = (row.get("speaker_id_guess") or "").strip()
    if guess:
        return guess.split(" (")[0].strip()
    return row["path"].rsplit(".", 1)[0]  # unknown: each clip its own speaker


def load_clips(spec: str | Path, kinds: tuple[str, ...] = ("real",)) -> list[Clip]:
    """Read a clip set; MANIFEST.tsv rows are filtered by ``kind`` (real clips by default)."""
    spec = Path(spec)
    if spec.is_dir() and (spec / "MANIFEST.tsv").is_file():
        spec = spec / "MANIFEST.tsv"
    if spec.is_file() and spec.suffix == ".tsv":
        with open(spec, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        return [Clip(spec.parent / r["path"], _speaker_from_manifest(r), r["path"].split("/")[0])
                for r in rows if r.get("kind", "real") in kinds]
    if spec.is_file() and spec.suffix == ".jsonl":
        clips = []
        for line in spec.read_text(encoding="utf-8").splitlines():
            if line.strip():
                d = json.loads(line)
                p = Path(d["path"])
                p = p if p.is_absolute() else spec.parent / p
                clips.append(Clip(p, str(d.get("speaker", p.stem)), str(d.get("source", ""))))
        return clips
    if spec.is_dir():
        files = sorted(p for p in spec.rglob("*") if p.suffix.lower() in MEDIA_SUFFIXES)
        return [Clip(p, p.parent.name, p.parent.name) for p in files]
    raise AvsyncError(f"{spec}: not a folder, MANIFEST.tsv or .jsonl clip list")
