"""``avsync batch``: expand the inputs, skip those already done, run an engine, stream the rows.

:func:`run_batch` is the library entry point behind the CLI; the engines (local process pool,
Ray actors) only compute rows, this module alone writes them, so resume is exact.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

from avsync.batch.inputs import BatchInput, check_specs, count_bound, expand_inputs
from avsync.batch.keep import KeepFilter
from avsync.batch.schedule import longest_first
from avsync.batch.store import ResultStore, latest_per_path
from avsync.batch.worker import WorkerConfig, check_method
from avsync.errors import AvsyncError, OutputError
from avsync.types import SyncResult

ENGINES = ("local", "ray")
RESULT_FIELDS = frozenset({f.name for f in fields(SyncResult)} | {"input_id", "error", "fixed", "fix_error"})
"""The fields a --keep expression may name: SyncResult's and the batch's own."""


@dataclass
class BatchSummary:
    """Counts of one run (``done``/``failed``: this run; ``skipped``: already in the results)."""

    total: int = 0
    skipped: int = 0
    done: int = 0
    failed: int = 0
    fixed: int = 0
    kept: int | None = None
    failed_overall: int = 0
    video_s: float = 0.0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    results: str = ""
    kept_path: str | None = None

    def line(self) -> str:
        rate = self.video_s / self.wall_s if self.wall_s > 0 else 0.0
        parts = [f"{self.total} inputs: {self.done - self.failed} measured, {self.failed} failed"
                 + (f", {self.skipped} already done" if self.skipped else ""),
                 f"{self.video_s / 60:.1f} video-min in {self.wall_s / 60:.1f} min "
                 f"({rate:.2f} video-min/min)"]
        if self.fixed:
            parts.append(f"{self.fixed} fixed")
        if self.kept is not None:
            parts.append(f"{self.kept} kept in {self.kept_path}")
        return "; ".join(parts) + f"; results: {self.results}"


ResultHook = Callable[[BatchInput, dict, BatchSummary], None]


def default_workers() -> int:
    """The CPUs this process may use (the local engine's default pool size)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def make_engine(engine: str, config: WorkerConfig, workers: int | None, address: str | None):
    if engine == "local":
        from avsync.batch.local import LocalEngine

        return LocalEngine(config, workers or default_workers())
    if engine == "ray":
        from avsync.batch.ray_engine import RayEngine

        return RayEngine(config, workers, address)
    raise AvsyncError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")


def kept_rows(rows: list[dict], items: list[BatchInput], keep: KeepFilter) -> list[dict]:
    """Manifest rows (``path`` + the input manifest's speaker/source/split + the measurement)
    of the results that pass ``keep``; the latest row per path."""
    meta = {i.input_id: i.meta for i in items}
    out = []
    for row in latest_per_path([r for r in rows if r.get("input_id") in meta]):
        if keep(row):
            entry = {"path": row["path"], **meta[row["input_id"]]}
            for key in ("offset_ms", "offset_frames", "confidence", "reliable", "duration_s", "input_id"):
                if key in row:
                    entry[key] = row[key]
            out.append(entry)
    return out


def write_manifest(rows: list[dict], path: Path) -> Path:
    from avsync.io import atomic_output

    with atomic_output(path, overwrite=True) as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def run_batch(inputs: list[str | Path], results: str | Path, *, engine: str = "local",
              address: str | None = None, workers: int | None = None, method: str | None = None,
              resume: bool = False, overwrite: bool = False, keep: str | None = None,
              kept: str | Path | None = None, fix_dir: str | Path | None = None,
              on_start: Callable[[int, int], None] | None = None,
              on_result: ResultHook | None = None, pin: bool = True, fast: bool = False) -> BatchSummary:
    """Measure every input once; rows appended to ``results`` (JSONL) as they finish.

    resume: skip inputs whose (path, size, mtime) already has a row; keep: a
    :class:`~avsync.batch.keep.KeepFilter` expression whose passing inputs go to ``kept``
    (JSONL manifest, default ``RESULTS.kept.jsonl``); fix_dir: corrected copies of reliable
    results more than one frame off. on_start(total, todo) and on_result(item, row, summary)
    drive a progress display. pin: each worker on a core of its own
    (:func:`avsync.batch.worker.claim_core`); fast: ``detect --fast`` in every worker. Returns
    the counts; ``failed_overall`` counts failed inputs including those of an earlier, resumed run.
    """
    t0 = time.perf_counter()
    keep_filter = KeepFilter(keep) if keep is not None else None  # parse errors before any work
    if keep_filter is not None:
        keep_filter.check_fields(RESULT_FIELDS)
    if engine not in ENGINES:
        raise AvsyncError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if address is not None and engine != "ray":
        raise AvsyncError("--address needs --engine ray")
    if kept is not None and keep_filter is None:
        raise AvsyncError("--kept needs --keep (the filter that decides what is kept)")
    check_specs(list(inputs))
    if fix_dir is not None:
        fix_dir = Path(fix_dir)
        try:
            fix_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"Cannot create {fix_dir}: {exc.strerror or exc}.") from exc
    config = WorkerConfig(method, str(fix_dir) if fix_dir is not None else None, pin=pin, fast=fast)
    ResultStore.check(results, resume, overwrite)
    # The workers start now (spawn, imports, model: ~2 CPU-s each) while this process checks the
    # method, lists the inputs, reads the results done so far and the inputs' durations.
    runner = make_engine(engine, config, workers, address)
    runner.start(count_bound(list(inputs)))
    try:
        check_method(method)
        items = expand_inputs(list(inputs))
        summary = BatchSummary(total=len(items), results=str(results))
        with ResultStore(results, resume=resume, overwrite=overwrite) as store:
            todo = [i for i in items if i.input_id not in store.done]
            summary.skipped = len(items) - len(todo)
            todo = longest_first(todo)
            if on_start is not None:
                on_start(len(items), len(todo))
            for item, row in runner.run(todo) if todo else ():
                store.append(row)
                summary.done += 1
                summary.failed += "error" in row
                summary.fixed += "fixed" in row
                summary.video_s += float(row.get("duration_s") or 0.0)
                summary.cpu_s += float((row.get("timings_s") or {}).get("cpu") or 0.0)
                if on_result is not None:
                    on_result(item, row, summary)
            rows = store.rows()
    finally:
        runner.close()
    ids = {i.input_id for i in items}
    summary.failed_overall = sum("error" in r for r in latest_per_path([r for r in rows
                                                                        if r.get("input_id") in ids]))
    if keep_filter is not None:
        out = Path(kept) if kept is not None else Path(results).with_suffix(".kept.jsonl")
        manifest = kept_rows(rows, items, keep_filter)
        write_manifest(manifest, out)
        summary.kept, summary.kept_path = len(manifest), str(out)
    summary.wall_s = time.perf_counter() - t0
    return summary
