"""Command line: ``avsync detect | fix | evaluate | models | prepare | generate | metrics | train``.

Thin wrappers over the library (the generation commands live in avsync.cli_gen, batch/report in
avsync.cli_batch).

Every user-facing failure is one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from avsync.cli_util import err
from avsync.cli_util import fail as _fail
from avsync.cli_util import one_sentence as _one_sentence
from avsync.errors import AvsyncError
from avsync.models.registry import DEFAULT_METHOD
from avsync.timing import DEFAULT_MAX_OFFSET_FRAMES

_ROTATE_HELP = ("Turn the pictures before face analysis: auto (the file's display matrix, as "
                "players do), or 0/90/180/270 degrees clockwise.")

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Measure and correct lip-sync offsets. offset > 0 means the audio is LATE.")


def _progress(enabled: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}"
                    "/{task.total} frames"), TimeRemainingColumn(), console=err,
                    disable=not enabled, transient=True)


_MAX_OFFSET_MS_HELP = ("Wide search for large offsets: +-MS (up to 10000) with a cheap correlation, then "
                       "the normal search around the best peaks; 0: off; default: +-5000 ms "
                       "when the normal search is unreliable.")


def _check_max_offset_ms(max_offset_ms: float | None) -> None:
    from avsync.search import check_max_offset_ms

    try:
        check_max_offset_ms(max_offset_ms)
    except AvsyncError as exc:
        _fail(_one_sentence(exc))


def _summary(r) -> str:
    if r.in_sync:
        verdict = "in sync"
    else:
        verdict = f"audio {'LATE' if r.offset_ms > 0 else 'EARLY'} by {abs(r.offset_ms):.0f} ms"
    rel = "reliable" if r.reliable else "LOW confidence: treat with care"
    lines = [f"{r.path}: {verdict}  (offset {r.offset_frames:+.1f} frames = {r.offset_ms:+.0f} ms "
             f"at {r.fps:g} fps; confidence {r.confidence:.1f}, {rel}; method {r.method})"]
    if getattr(r, "search_range_ms", 0):
        lines.append(f"  searched +-{r.search_range_ms:.0f} ms (large offsets: coarse avcorr, then "
                     "the method around the best peaks)")
    if getattr(r, "container_offset_ms", 0):
        when = "after" if r.container_offset_ms > 0 else "before"
        lines.append(f"  container: the audio stream starts {abs(r.container_offset_ms):.0f} ms {when} the "
                     f"video stream ({r.container_offset_ms:+.0f} ms, included in the offset above)")
    for t in r.tracks:
        mark = "*" if t.speaking else " "
        lines.append(f"  {mark} track {t.track_id} shot {t.shot} {t.start_s:7.2f}-{t.end_s:7.2f} s:"
                     f" {t.offset_frames:+.1f} fr ({t.offset_ms:+.0f} ms), conf {t.confidence:.1f}")
    if not r.reliable:
        lines.append("  the evidence is weak: check 'avsync detect --plot' before fixing")
    elif not r.in_sync:
        lines.append(f"  fix: avsync fix '{r.path}' -o OUT --offset-ms {r.offset_ms:g}")
    return "\n".join(lines)


@app.command()
def detect(
    paths: list[Path] = typer.Argument(..., help="Video files (any container FFmpeg reads)."),
    method: str = typer.Option(DEFAULT_METHOD, help="Method name (see 'avsync models')."),
    json_out: bool = typer.Option(False, "--json", help="One JSON object per input per line."),
    max_offset_frames: int = typer.Option(DEFAULT_MAX_OFFSET_FRAMES, min=1, max=100,
                                          help="Search +-N frames."),
    max_offset_ms: float | None = typer.Option(None, help=_MAX_OFFSET_MS_HELP),
    plot: Path | None = typer.Option(None, help="PNG with the score curve and offset over time "
                                     "(one input only)."),
    max_faces: int = typer.Option(4, min=1, max=16, help="Faces tracked at once."),
    face_backend: str = typer.Option("mesh", help="Landmarks: mesh (MediaPipe's models tracking "
                                     "each face), mediapipe (MediaPipe's own graph) or dlib "
                                     "(dlib needs the 'dlib' extra and libdlib-data)."),
    progress: bool = typer.Option(True, help="Progress bar on stderr."),
    rotate: str = typer.Option("auto", help=_ROTATE_HELP),
    weights: Path | None = typer.Option(None, help="Your weights file for --method syncnet_v2 "
                                        "(syncnet_v2.model) or wav2lip_expert (lipsync_expert.pth)."),
    s3fd_weights: Path | None = typer.Option(None, help="Your sfd_face.pth: crop faces with S3FD "
                                             "like syncnet_python (peer methods only)."),
    audio_stream: int | None = typer.Option(None, min=0, help="Audio stream N (0 = first; "
                                            "default: the default-disposition one)."),
    fast: bool = typer.Option(False, "--fast", help="Face landmarks on every other frame, "
                              "interpolated between: faster, slightly less accurate "
                              "(docs/BENCHMARKS.md, Speed v5)."),
) -> None:
    """Measure the offset between lips and voice (offset > 0: audio LATE)."""
    from avsync.inference import detect as run_detect

    if plot is not None and len(paths) > 1:
        _fail("--plot takes one input file")
    _check_max_offset_ms(max_offset_ms)
    failed = 0
    for path in paths:
        try:
            with _progress(progress and sys.stderr.isatty()) as bar:
                task = bar.add_task(path.name, total=None)
                result = run_detect(path, method=method, max_offset_frames=max_offset_frames,
                                    max_faces=max_faces, face_backend=face_backend,
                                    max_offset_ms=max_offset_ms, rotate=rotate,
                                    weights=weights, s3fd_weights=s3fd_weights,
                                    audio_stream=audio_stream, fast=fast,
                                    on_frame=lambda n, t=task: bar.update(t, completed=n + 1))
            if plot is not None:
                from avsync.plots import plot_result

                plot_result(result, plot)
        except AvsyncError as exc:
            failed += 1
            _report_error(path, _one_sentence(exc), json_out)
            continue
        except Exception as exc:  # noqa: BLE001  (unexpected: still one line per input)
            failed += 1
            _report_error(path, f"unexpected failure ({type(exc).__name__}: "
                                f"{_one_sentence(exc)})", json_out)
            continue
        print(json.dumps(result.to_dict()) if json_out else _summary(result), flush=True)
    if failed:
        raise typer.Exit(1)


def _report_error(path: Path, message: str, json_out: bool) -> None:
    if not json_out and str(path) not in message and path.name not in message:
        message = f"{path}: {message}"
    if json_out:
        print(json.dumps({"path": str(path), "error": message}), flush=True)
    else:
        err.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)


@app.command()
def fix(
    in_path: Path = typer.Argument(..., help="Input video (never modified)."),
    out: Path = typer.Option(..., "-o", "--out", help="Output file (must differ from input)."),
    offset_ms: float | None = typer.Option(None, help="Known offset (> 0: audio late); "
                                           "detected when omitted."),
    method: str = typer.Option(DEFAULT_METHOD, help="Method used when detecting."),
    overwrite: bool = typer.Option(False, help="Replace OUT if it exists."),
    force: bool = typer.Option(False, help="Apply a detected offset even at low confidence."),
    max_offset_ms: float | None = typer.Option(None, help=_MAX_OFFSET_MS_HELP + " (when detecting)"),
    rotate: str = typer.Option("auto", help=_ROTATE_HELP),
    audio_stream: int | None = typer.Option(None, min=0, help="Audio stream N to measure and "
                                            "shift (0 = first; only it is written)."),
) -> None:
    """Write a new file whose audio is shifted into sync (video stream copied)."""
    from avsync import fix as run_fix

    _check_max_offset_ms(max_offset_ms)
    try:
        written, used = run_fix(in_path, out, offset_ms=offset_ms, method=method,
                                overwrite=overwrite, force=force, max_offset_ms=max_offset_ms,
                                rotate=rotate, audio_stream=audio_stream)
    except AvsyncError as exc:
        _fail(_one_sentence(exc))
    except Exception as exc:  # noqa: BLE001
        _fail(f"unexpected failure ({type(exc).__name__}: {_one_sentence(exc)})")
    direction = "earlier" if used > 0 else "later"
    print(f"wrote {written}: audio moved {abs(used):.0f} ms {direction}")


@app.command()
def models() -> None:
    """List the available sync methods."""
    from avsync.models.registry import available_models
    from avsync.models.trained import has_weights

    for info in available_models():
        default = " (default)" if info.name == DEFAULT_METHOD else ""
        missing = " [no weights shipped]" if info.kind == "trained" and not has_weights(info.name) else ""
        print(f"{info.name:10s} {info.kind:10s} {info.description}{default}{missing}")


@app.command()
def evaluate(
    clips: Path = typer.Option(..., help="Folder of in-sync clips, a MANIFEST.tsv or a .jsonl."),
    method: list[str] = typer.Option([DEFAULT_METHOD], help="Method(s) to evaluate."),
    shifts: str = typer.Option("-15..15", help="Shifts in frames: 'a..b' or 'a..b..step'."),
    contexts: str = typer.Option("5,7,9,11,13,15", help="Context lengths in frames."),
    cache: Path = typer.Option(Path("cache/eval"), help="Folder for face-analysis cache."),
    report: Path | None = typer.Option(None, help="Write the markdown table here."),
    json_out: Path | None = typer.Option(None, "--json", help="Write per-case results (JSON)."),
    limit: int = typer.Option(0, help="Only the first N clips (0 = all)."),
    workers: int = typer.Option(1, min=1, help="Processes for the face analysis."),
) -> None:
    """Shift in-sync clips by known amounts and measure how well each method recovers them."""
    from avsync.evaluation.protocol import evaluate as run_eval
    from avsync.evaluation.protocol import parse_range

    try:
        shift_list = parse_range(shifts)
        ctx = [int(c) for c in contexts.split(",") if c.strip()]
        table = run_eval(clips, methods=method, shifts=shift_list, contexts=ctx,
                         cache_dir=cache, limit=limit, workers=workers, console=err,
                         report_path=report, json_path=json_out)
    except AvsyncError as exc:
        _fail(_one_sentence(exc))
    except ValueError as exc:
        _fail(_one_sentence(exc))
    print(table)


@app.command()
def prepare(
    clips: Path = typer.Option(..., help="Folder of in-sync clips, a MANIFEST.tsv or a .jsonl; with "
                               "--layout, the corpus root."),
    out: Path = typer.Option(Path("cache/train"), help="Folder for the training cache (.npz)."),
    workers: int = typer.Option(1, min=1, help="Processes for the face analysis."),
    progress: bool = typer.Option(True, help="Progress bar on stderr."),
    layout: str = typer.Option("none", metavar="[auto|lrs2|lrs3|voxceleb2|grid|none]",
                               help="Corpus layout of --clips (none: a plain clip set as before). "
                               "Writes a manifest with speakers and splits and caches the "
                               "train/val/pretrain clips."),
    manifest: Path | None = typer.Option(None, help="Manifest written with --layout "
                                         "(default: OUT/manifest.jsonl)."),
    limit: int = typer.Option(0, min=0, help="At most N clips (0: all); with --layout, spread "
                              "over the splits."),
    kind: str = typer.Option("sync", "--for", metavar="[sync|generation]",
                             help="sync: data of the sync methods; generation: adds 64x64 RGB "
                             "mouth crops and their lip points (the lip generator)."),
) -> None:
    """Preprocess clips once into a compact training cache (mouth crops, lips, log-mel)."""
    import time

    from avsync.data import build_cache
    from avsync.data.cache import KINDS
    from avsync.data.corpora import LAYOUTS, corpus_summary, scan_corpus, write_manifest
    from avsync.evaluation.clips import load_clips

    t0 = time.perf_counter()
    layout = layout.lower()
    if layout not in (*LAYOUTS, "none"):
        _fail(f"--layout must be one of {', '.join((*LAYOUTS, 'none'))}, got {layout!r}")
    if kind not in KINDS:
        _fail(f"--for must be one of {', '.join(KINDS)}, got {kind!r}")
    if layout == "none" and manifest is not None:
        _fail("--manifest needs --layout (it is the manifest of a scanned corpus)")
    try:
        if out.exists() and not out.is_dir():
            _fail(f"{out}: exists and is not a folder")
        if layout == "none":
            clip_list = load_clips(clips)[: limit or None]
        else:
            corpus = scan_corpus(clips, layout, limit=limit)
            written = write_manifest(corpus, manifest if manifest is not None else out / "manifest.jsonl")
            print(f"{corpus_summary(corpus)}; manifest {written}")
            clip_list = [c.as_clip() for c in corpus if c.split in ("train", "val", "pretrain")]
        if not clip_list:
            _fail(f"{clips}: no clips found" + (" in the train/val/pretrain splits" if layout != "none"
                                                else ""))
        paths = build_cache(clip_list, out, workers=workers, progress=progress and err.is_terminal,
                            kind=kind)
    except AvsyncError as exc:
        _fail(_one_sentence(exc))
    except OSError as exc:
        _fail(f"cannot write the cache in {out} ({exc.strerror or exc})")
    size = sum(p.stat().st_size for p in paths)
    print(f"cached {len(paths)} of {len(clip_list)} clips in {out} ({len(clip_list) - len(paths)} "
          f"skipped); {size / 2**20:.1f} MiB; {time.perf_counter() - t0:.0f} s")
    if not paths:
        raise typer.Exit(1)


def _register_generation() -> None:
    from avsync.cli_gen import generate, metrics, train_app

    app.command()(generate)
    app.command()(metrics)
    app.add_typer(train_app, name="train")
    from avsync.cli_batch import batch, report

    app.command()(batch)
    app.command()(report)


_register_generation()


def main() -> None:
    """The ``avsync`` command. Once the command has returned (its outputs written atomically and
    closed, its progress bar stopped), the process ends without tearing the interpreter down:
    the exit handlers run and the output is flushed, then ``os._exit`` skips the module teardown
    and the C++ destructors of torch, LiteRT and OpenCV, ~0.25-0.3 s of every run
    (docs/BENCHMARKS.md "Speed v9")."""
    try:
        app()  # typer's standalone mode ends with SystemExit
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
    if code is None:
        code = 0
    elif not isinstance(code, int):  # sys.exit("message"), as the interpreter would print it
        print(code, file=sys.stderr)
        code = 1
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (``| head``) or stream
            pass
    os._exit(code)


if __name__ == "__main__":
    main()
