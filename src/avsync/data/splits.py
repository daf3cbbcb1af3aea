"""Speaker-disjoint train/validation splits of clip sets, stored as JSON Lines files.

No speaker appears on both sides: clips are grouped by :func:`speaker_group` (Clip.speaker, with
a few aliases for the same person under different names in the real-clip MANIFEST) and whole
groups are assigned. GRID speaker s1 (41 of the 86 real clips, 3 s each) is pinned to the train
side, and any one group's share of the train side is capped at MAX_GROUP_SHARE (excess clips,
in path order, are left out of both sides). On the real clips the cap does not bind: s1 is
123 s of about 360 s of train audio-video (34 %).

The split of the real clips ships as ``realclips_split.jsonl`` next to this module, one row per
clip: ``{"path": <path relative to MANIFEST.tsv's folder>, "speaker": ..., "split": "train"|"val"}``.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from avsync.errors import AvsyncError
from avsync.evaluation.clips import Clip

REALCLIPS_SPLIT: Path = Path(__file__).with_name("realclips_split.jsonl")
"""The committed speaker split of ../shared/data/realclips (paths relative to that folder)."""

TRAIN_ONLY_GROUPS: tuple[str, ...] = ("GRID s1",)
"""Groups always put on the train side (GRID s1 would otherwise dominate whichever side)."""

MAX_GROUP_SHARE: float = 0.5
"""Largest share of the train side (seconds when durations are given, else clips) that one
speaker group may take; clips beyond it are dropped from the split."""

SPEAKER_ALIASES: dict[str, str] = {
    # Same person under another MANIFEST name (checked on the frames).
    "GRID s1-like": "GRID s1",
    "LipNet/evaluation/samples/GRID/bbaf2n": "GRID s1",
    "SadTalker/examples/ref_video/WDA_AlexandriaOcasioCortez_000": "Alexandria Ocasio-Cortez",
    "HDTF-style clip of Alexandria Ocasio-Cortez": "Alexandria Ocasio-Cortez",
    "video-retalking/examples/face/3": "Alexandria Ocasio-Cortez",
    "PC-AVS/misc/Pose_Source/517600055": "PC-AVS/misc/Input/00002",
    # MANIFEST note: "Andrew Ng, same session as andrew_clip_1" (added 2026-12-01).
    "styletalk/muxed/andrew_clip_1_video+wav": "Andrew Ng",
    "styletalk/muxed/andrew_clip_2_video+wav": "Andrew Ng",
}
"""Clip.speaker -> identity group, for people who appear under several names."""


def speaker_group(speaker: str) -> str:
    """The identity group of a Clip.speaker (SPEAKER_ALIASES applied)."""
    return SPEAKER_ALIASES.get(speaker, speaker)


def _weights(clips: Sequence[Clip], durations: Mapping[Path, float] | None) -> dict[Path, float]:
    if durations is None:
        return {c.path: 1.0 for c in clips}
    missing = [c.path for c in clips if c.path not in durations]
    if missing:
        raise AvsyncError(f"no duration given for {missing[0]}")
    return {c.path: float(durations[c.path]) for c in clips}


def speaker_split(clips: Sequence[Clip], val_fraction: float = 0.3, seed: int = 0,
                  durations: Mapping[Path, float] | None = None,
                  train_only: Sequence[str] = TRAIN_ONLY_GROUPS,
                  max_group_share: float = MAX_GROUP_SHARE) -> tuple[list[Clip], list[Clip]]:
    """Split clips into (train, val), disjoint by speaker group, deterministic given ``seed``.

    val_fraction: target share of the validation side, in seconds when ``durations``
    (Clip.path -> seconds) is given, else in clips. Groups are visited in a seeded shuffle of
    their sorted names and put on the validation side while they fit in the target (first fit);
    groups in ``train_only`` always go to train. A train group above ``max_group_share`` of the
    train side keeps only its first clips (by path) up to that share; the rest are in neither
    list. Both lists are sorted by path.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise AvsyncError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if not 0.0 < max_group_share <= 1.0:
        raise AvsyncError(f"max_group_share must be in (0, 1], got {max_group_share}")
    weight = _weights(clips, durations)
    groups: dict[str, list[Clip]] = defaultdict(list)
    for c in sorted(clips, key=lambda c: str(c.path)):
        groups[speaker_group(c.speaker)].append(c)
    pinned = {speaker_group(s) for s in train_only}
    free = sorted(g for g in groups if g not in pinned)
    random.Random(seed).shuffle(free)
    target = val_fraction * sum(weight.values())
    val_groups: list[str] = []
    val_w = 0.0
    for g in free:
        w = sum(weight[c.path] for c in groups[g])
        if val_w + w <= target + 1e-9:
            val_groups.append(g)
            val_w += w
    train_groups = [g for g in groups if g not in val_groups]
    train: list[Clip] = []
    for g in train_groups:
        others = sum(weight[c.path] for h in train_groups if h != g for c in groups[h])
        cap = max_group_share / (1.0 - max_group_share) * others if max_group_share < 1 else np.inf
        kept = 0.0
        for c in groups[g]:
            if kept + weight[c.path] > cap + 1e-9 and kept > 0:
                break
            train.append(c)
            kept += weight[c.path]
    val = [c for g in val_groups for c in groups[g]]
    return sorted(train, key=lambda c: str(c.path)), sorted(val, key=lambda c: str(c.path))


def _rel(path: Path, root: Path | None) -> str:
    if root is None:
        return path.as_posix()
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError as exc:
        raise AvsyncError(f"{path} is not inside {root}") from exc


def write_split(path: str | Path, train: Sequence[Clip], val: Sequence[Clip],
                root: str | Path | None = None) -> Path:
    """Write a split as JSON Lines (train rows, then val rows); atomic, replaces ``path``.

    Rows: {"path": clip path relative to ``root`` (as given when root is None), "speaker":
    Clip.speaker, "split": "train" | "val"}.
    """
    from avsync.io import atomic_output

    r = Path(root) if root is not None else None
    lines = [json.dumps({"path": _rel(Path(c.path), r), "speaker": c.speaker, "split": side})
             for side, part in (("train", train), ("val", val)) for c in part]
    out = Path(path)
    with atomic_output(out, overwrite=True) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def read_split(path: str | Path = REALCLIPS_SPLIT, root: str | Path | None = None
               ) -> tuple[list[Clip], list[Clip]]:
    """Read a split file: (train, val) Clips; relative paths are joined to ``root`` when given.

    Clip.source is the first path component (as for MANIFEST.tsv clip sets).
    """
    train: list[Clip] = []
    val: list[Clip] = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            rel, side = str(row["path"]), row["split"]
        except (ValueError, KeyError) as exc:
            raise AvsyncError(f"{path}:{n}: not a split row ({exc})") from exc
        if side not in ("train", "val"):
            raise AvsyncError(f"{path}:{n}: split must be 'train' or 'val', got {side!r}")
        p = Path(rel)
        if root is not None and not p.is_absolute():
            p = Path(root) / p
        clip = Clip(p, str(row.get("speaker", p.stem)), rel.split("/")[0])
        (train if side == "train" else val).append(clip)
    return train, val


def split_cache_files(cache_files: Sequence[str | Path], split_path: str | Path = REALCLIPS_SPLIT
                      ) -> tuple[list[Path], list[Path]]:
    """Sort cache files into (train, val) by the split file; files of unlisted clips are dropped.

    A cache file belongs to a row when its stored absolute ``path`` ends with the row's path.
    """
    train, val = read_split(split_path)
    side = {c.path.as_posix(): "train" for c in train} | {c.path.as_posix(): "val" for c in val}
    out: dict[str, list[Path]] = {"train": [], "val": []}
    for f in cache_files:
        try:
            with np.load(f, allow_pickle=False) as z:
                stored = str(z["path"])
        except (OSError, ValueError, KeyError) as exc:
            raise AvsyncError(f"{f}: not a readable cache file ({type(exc).__name__}); delete it and run "
                              "'avsync prepare' again") from exc
        for rel, s in side.items():
            if stored == rel or stored.endswith("/" + rel):
                out[s].append(Path(f))
                break
    return out["train"], out["val"]


def split_summary(train: Sequence[Clip], val: Sequence[Clip],
                  durations: Mapping[Path, float] | None = None) -> str:
    """One line per side: clips, speaker groups and seconds (when durations are given)."""
    lines = []
    for name, part in (("train", train), ("val", val)):
        n_groups = len({speaker_group(c.speaker) for c in part})
        secs = f", {sum(durations[c.path] for c in part):.1f} s" if durations is not None else ""
        lines.append(f"{name}: {len(part)} clips, {n_groups} speakers{secs}")
    return "\n".join(lines)
