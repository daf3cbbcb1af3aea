"""Command line of the lip generator: ``avsync generate``, ``avsync metrics``, ``avsync train generator``.

Thin wrappers over avsync.lipgen.generate, avsync.lipgen.dub (``generate --video``),
avsync.lipgen.video_metrics and avsync.lipgen.pipeline; every failure is one line on stderr and exit code 1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from avsync.cli_util import call as _call
from avsync.cli_util import err
from avsync.cli_util import fail as _fail

train_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Train models (sync methods: benchmarks/train.py; the lip generator: here).",
)


def generate(
    audio: Path = typer.Option(..., help="Speech: any audio or video file FFmpeg reads."),
    image: Path | None = typer.Option(
        None, help="A face photo (the mouth is found and cropped) or a lip crop."
    ),
    video: Path | None = typer.Option(
        None, help="Dub this face video instead: its mouth is regenerated to say AUDIO, frame by frame."
    ),
    out: Path = typer.Option(..., "-o", "--out", help="Output .mp4 (25 fps lip video, or the dubbed video)."),
    checkpoint: Path | None = typer.Option(
        None, help="Generator checkpoint (default: the shipped generator; --video: the paper model)."
    ),
    size: int = typer.Option(64, min=16, max=1024, help="Output side in pixels of an --image lip video."),
    overwrite: bool = typer.Option(False, help="Replace OUT if it exists."),
    progress: bool = typer.Option(True, help="Progress bar on stderr."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
) -> None:
    """Generate lip movements of the image's identity saying the audio (Chen et al. 2018), or dub a
    face video with new audio (--video)."""
    if (image is None) == (video is None):
        _fail("give exactly one of --image (a lip video from one face image) or --video (dubbing)")
    if video is not None and size != 64:
        _fail("--size applies to --image output; a dubbed video keeps the size of --video")
    bar = Progress(
        TextColumn("generating"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("windows"),
        TimeRemainingColumn(),
        console=err,
        disable=not (progress and err.is_terminal),
        transient=True,
    )
    with bar:
        task = bar.add_task("windows", total=None)
        def on_window(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        if video is not None:
            from avsync.lipgen.dub import dub

            summary = _call(dub, video, audio, out, checkpoint=checkpoint, overwrite=overwrite,
                            on_window=on_window)
        else:
            from avsync.lipgen.generate import generate as run_generate

            summary = _call(run_generate, audio, image, out, checkpoint=checkpoint, overwrite=overwrite,
                            size=size, on_window=on_window)
    if json_out:
        print(json.dumps(summary))
    elif video is not None:
        print(
            f"wrote {summary['path']}: {summary['frames']} frames at {summary['fps']:g} fps "
            f"({summary['duration_s']:.2f} s), mouth regenerated in {summary['face_frames']} frames"
        )
    else:
        print(
            f"wrote {summary['path']}: {summary['frames']} frames at {summary['fps']:g} fps "
            f"({summary['duration_s']:.2f} s), identity from the {summary['identity']}"
        )


def metrics(
    videos: list[Path] = typer.Argument(..., help="The (generated) face or lip video to score "
                                        "(several with --lse)."),
    reference: Path | None = typer.Option(None, help="The real video it should match (LMD, SSIM, PSNR)."),
    json_out: bool = typer.Option(False, "--json", help="One JSON object (per video with --lse)."),
    lse: bool = typer.Option(False, "--lse", help="Paper-comparable LSE-D/LSE-C: syncnet_python's "
                             "SyncNet on your syncnet_v2.model (--weights)."),
    weights: Path | None = typer.Option(None, help="syncnet_v2.model, for --lse."),
    s3fd_weights: Path | None = typer.Option(None, help="sfd_face.pth: S3FD crops, for --lse."),
) -> None:
    """Lip-generation metrics: CPBD, sync (LSE-D/LSE-C by our SyncNet); with --reference LMD, SSIM, PSNR.

    With --lse: LSE-D/LSE-C of syncnet_python's SyncNet (the papers' numbers) for each video."""
    from avsync.lipgen.video_metrics import video_metrics

    if lse:
        from avsync.peers.lse import lse_command

        raise typer.Exit(lse_command(videos, weights, s3fd_weights, json_out))
    if weights is not None or s3fd_weights is not None:
        _fail("--weights/--s3fd-weights go with --lse")
    if len(videos) != 1:
        _fail("metrics scores one video (several only with --lse)")
    video = videos[0]
    result = _call(video_metrics, video, reference)
    if json_out:
        print(json.dumps(result))
        return
    lines = [
        f"{video}: {result['frames']} frames at {result['fps']:g} fps ({result['source']})",
        f"  CPBD {result['cpbd']:.3f}   LSE-D {result['lse_d']:.3f}   LSE-C {result['lse_c']:.3f}   "
        f"sync offset {result['sync_offset_frames']:+d} frames (> 0: audio late)",
    ]
    if reference is not None:
        lmd_text = "n/a" if result["lmd"] is None else f"{result['lmd']:.2f} px"
        psnr_text = "inf (identical)" if result["psnr"] is None else f"{result['psnr']:.2f} dB"
        lines.append(
            f"  vs {reference} ({result['compared_frames']} frames): LMD {lmd_text}   "
            f"SSIM {result['ssim']:.3f}   PSNR {psnr_text}"
        )
    print("\n".join(lines))


@train_app.command("generator")
def train_generator(
    cache: Path = typer.Option(
        Path("cache/gen"), help="Generation cache ('avsync prepare --for generation')."
    ),
    out: Path = typer.Option(Path("runs/gen"), help="Folder for checkpoints, curves and run.json."),
    preset: str = typer.Option("small", help="small (the shipped recipe) or debug (tiny, for tests)."),
    split: Path | None = typer.Option(None, help="Speaker split file (default: the realclips split)."),
    device: str = typer.Option("auto", help="cpu, cuda, cuda:N or auto."),
    generator_steps: int | None = typer.Option(None, min=0, help="Steps of the full-loss generator."),
    rec_steps: int | None = typer.Option(
        None, min=0, help="Steps of the reconstruction-only baseline (0: skip)."
    ),
) -> None:
    """Train the lip generator and its critics (flow, landmarks, correlation, autoencoder)."""
    from dataclasses import replace

    import torch

    from avsync.lipgen.pipeline import GenRecipe, train_all

    if preset not in ("small", "debug"):
        _fail(f"--preset must be small or debug, got {preset!r}")
    recipe = GenRecipe.debug() if preset == "debug" else GenRecipe()
    if generator_steps is not None:
        recipe = replace(recipe, generator_steps=generator_steps)
    if rec_steps is not None:
        recipe = replace(recipe, rec_steps=rec_steps)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if out.exists() and not out.is_dir():
        _fail(f"{out}: exists and is not a folder")
    kw = {"split": split} if split is not None else {}
    summary = _call(train_all, cache, out, recipe, device=device,
                    log=lambda m: print(m, file=sys.stderr, flush=True), **kw)
    print(json.dumps(summary, default=str))
