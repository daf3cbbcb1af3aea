"""The results JSONL of a batch run: whole lines appended and flushed, safe to resume.

Each line is one JSON object, written with a single ``write`` on an ``O_APPEND`` descriptor, so a
run killed at any moment (Ctrl-C, SIGKILL, a lost node) leaves at most a partial *last* line: a
written line is in the kernel's hands, whatever then happens to the process. Opening the store
drops such a torn tail (it never held a finished result), and the ids of the complete lines tell
``--resume`` what is done. ``fsync`` (which only matters if the machine itself goes down) is
grouped: at the first append :data:`FSYNC_INTERVAL_S` or more after the previous one, and at
close, so a driver taking hundreds of results a second does not wait ~3 ms on the disk for each
(lines lost to a power cut are simply measured again on ``--resume``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

from avsync.errors import AvsyncError, OutputError

FSYNC_INTERVAL_S: float = 1.0
"""Least time between two fsyncs of the results (an append after that long, or close, does one)."""


def read_results(path: str | Path) -> list[dict]:
    """The complete JSON lines of a results file (a torn or unparsable line is skipped)."""
    rows = []
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise AvsyncError(f"{path}: cannot read the results ({exc.strerror or exc})") from exc
    for line in data.split(b"\n"):
        if line.strip():
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(row, dict):
                rows.append(row)
    return rows


def latest_per_path(rows: list[dict]) -> list[dict]:
    """One row per ``path``: the last one written (a re-measured file supersedes its old line)."""
    last: dict[str, dict] = {}
    for row in rows:
        last.pop(str(row.get("path")), None)
        last[str(row.get("path"))] = row
    return list(last.values())


class ResultStore:
    """Append-only results file. ``done`` holds the input ids already written."""

    def __init__(self, path: str | Path, resume: bool = False, overwrite: bool = False) -> None:
        self.path = Path(path)
        self.check(self.path, resume, overwrite)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        if overwrite and not resume:
            flags |= os.O_TRUNC
        try:
            self._fd = os.open(self.path, flags, 0o666)
        except OSError as exc:
            raise OutputError(f"Cannot write {self.path}: {exc.strerror or exc}.") from exc
        self._drop_torn_tail()
        self._synced_at = time.monotonic()
        self._dirty = False
        self.done: set[str] = {str(r["input_id"]) for r in self.rows() if "input_id" in r}

    @staticmethod
    def check(path: str | Path, resume: bool = False, overwrite: bool = False) -> None:
        """Raise OutputError where opening ``path`` would (a folder, no parent folder, a
        non-empty file without resume/overwrite); changes nothing."""
        path = Path(path)
        if path.is_dir():
            raise OutputError(f"Cannot write {path}: it is a folder.")
        if not path.parent.is_dir():
            raise OutputError(f"Cannot write {path}: the folder {path.parent} does not exist.")
        if path.exists() and path.stat().st_size > 0 and not (resume or overwrite):
            raise OutputError(f"{path} exists; pass --resume to continue that run "
                              "or --overwrite to start again.")

    def _drop_torn_tail(self) -> None:
        """Truncate a partial last line (no newline) left by a killed writer."""
        size = os.fstat(self._fd).st_size
        if size == 0:
            return
        with open(self.path, "rb") as fh:
            fh.seek(max(0, size - 1))
            if fh.read(1) == b"\n":
                return
            keep, pos = 0, 0
            fh.seek(0)
            for line in fh:
                pos += len(line)
                if line.endswith(b"\n"):
                    keep = pos
        os.ftruncate(self._fd, keep)

    def rows(self) -> list[dict]:
        return read_results(self.path)

    def append(self, row: dict) -> None:
        """Write ``row`` as one whole line (fsync: see FSYNC_INTERVAL_S)."""
        data = (json.dumps(row, separators=(", ", ": ")) + "\n").encode()
        written = os.write(self._fd, data)
        while written < len(data):  # a regular file takes it in one write; be safe anyway
            written += os.write(self._fd, data[written:])
        self._dirty = True
        if time.monotonic() - self._synced_at >= FSYNC_INTERVAL_S:
            self.sync()
        if "input_id" in row:
            self.done.add(str(row["input_id"]))

    def sync(self) -> None:
        """fsync the lines written so far."""
        if self._fd >= 0 and self._dirty:
            os.fsync(self._fd)
            self._dirty = False
        self._synced_at = time.monotonic()

    def close(self) -> None:
        if self._fd >= 0:
            self.sync()
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[dict]:
        return iter(self.rows())
