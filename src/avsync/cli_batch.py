"""Command line of corpus-scale runs: ``avsync batch`` and ``avsync report``.

Thin wrappers over avsync.batch; every failure is one line on stderr and exit code 1
(``batch`` also exits 1 when any input failed; 130 when interrupted, resumable).
"""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from avsync.cli_util import call as _call
from avsync.cli_util import err
from avsync.cli_util import fail as _fail

REFRESH_PER_S: float = 1.0
"""Progress redraws per second (rich's default, 10, costs the driver CPU that the workers need)."""


class _BatchProgress:
    """Files done/failed, video-minutes per wall-minute and ETA on stderr (rich)."""

    def __init__(self, enabled: bool) -> None:
        self.bar = Progress(TextColumn("batch"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[failed]} failed  {task.fields[rate]} video-min/min"),
                            TimeRemainingColumn(), console=err, disable=not enabled, transient=True,
                            refresh_per_second=REFRESH_PER_S)
        self.task = None
        self.t0 = time.perf_counter()

    def start(self, total: int, todo: int) -> None:
        if total > todo:
            err.print(f"resuming: {total - todo} of {total} inputs already in the results", highlight=False)
        self.bar.start()
        self.task = self.bar.add_task("batch", total=todo, failed=0, rate="-")
        self.t0 = time.perf_counter()

    def update(self, item, row, summary) -> None:
        minutes = (time.perf_counter() - self.t0) / 60
        rate = f"{summary.video_s / 60 / minutes:.2f}" if minutes > 0 else "-"
        self.bar.update(self.task, completed=summary.done, failed=summary.failed, rate=rate)
        if "error" in row:
            message = row["error"] if item.path in row["error"] else f"{item.path}: {row['error']}"
            self.bar.console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)

    def stop(self) -> None:
        self.bar.stop()


def batch(
    inputs: list[str] = typer.Argument(..., help="Files, folders (recursive), globs, or manifests "
                                       "(.jsonl with 'path', .tsv/.csv with a path column)."),
    out: Path = typer.Option(..., "-o", "--out", help="Results JSONL: one `detect --json` object "
                             "(+ input_id) per input, appended as each finishes."),
    engine: str = typer.Option("local", metavar="[local|ray]", help="local: a process pool; ray: Ray "
                               "actors (pip extra 'ray')."),
    address: str | None = typer.Option(None, help="Ray cluster to join: auto or HOST:PORT "
                                       "(default: start a local Ray)."),
    workers: int | None = typer.Option(None, min=1, help="Worker processes / actors (default: local "
                                       "this machine's CPUs, ray all cluster CPUs)."),
    method: str | None = typer.Option(None, help="Method name (see 'avsync models'; default: the default)."),
    resume: bool = typer.Option(False, help="Skip inputs already in OUT (same path, size, mtime)."),
    overwrite: bool = typer.Option(False, help="Start OUT again from empty."),
    keep: str | None = typer.Option(None, help="Filter, e.g. 'reliable and abs(offset_ms) <= 40': "
                                    "inputs that pass go to the --kept manifest."),
    kept: Path | None = typer.Option(None, help="Manifest of kept inputs (default OUT.kept.jsonl)."),
    fix_dir: Path | None = typer.Option(None, help="Write corrected copies of reliable results more "
                                        "than 1 frame off here (never over an input)."),
    pin: bool = typer.Option(True, help="Each worker on a CPU core of its own (--no-pin on a machine "
                             "busy with other work)."),
    fast: bool = typer.Option(False, "--fast", help="Face landmarks on every other frame, interpolated "
                              "between (as detect --fast): faster, a measured accuracy cost."),
    progress: bool = typer.Option(True, help="Progress bar on stderr."),
) -> None:
    """Measure many files (resumable): one JSON line per input in OUT."""
    from avsync.batch import run_batch

    bar = _BatchProgress(progress and err.is_terminal)
    try:
        summary = _call(run_batch, inputs, out, engine=engine, address=address, workers=workers,
                        method=method, resume=resume, overwrite=overwrite, keep=keep, kept=kept,
                        fix_dir=fix_dir, on_start=bar.start, on_result=bar.update, pin=pin, fast=fast)
    except KeyboardInterrupt:
        bar.stop()
        _fail(f"interrupted; finished inputs are in {out}: rerun with --resume to go on", code=130)
    finally:
        bar.stop()
    err.print(f"batch: {summary.line()}", highlight=False, soft_wrap=True)
    if summary.failed_overall:
        raise typer.Exit(1)


def report(
    results: Path = typer.Argument(..., help="Results JSONL of 'avsync batch'."),
    out: Path = typer.Option(..., "-o", "--out", help="HTML file (self-contained, no server)."),
    overwrite: bool = typer.Option(False, help="Replace OUT if it exists."),
    max_plots: int = typer.Option(500, min=0, help="Per-clip plots for the N worst clips (0: none)."),
) -> None:
    """Write one static HTML page to review a batch run (table, histograms, per-clip plots)."""
    from avsync.batch.report import write_report

    written, n = _call(write_report, results, out, overwrite=overwrite, max_plots=max_plots)
    print(f"wrote {written}: {n} results")
