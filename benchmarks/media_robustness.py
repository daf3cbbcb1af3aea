"""Phone rotation, small faces and high frame rates: offsets and confidences of `detect`.

    python benchmarks/media_robustness.py [--what rotation,small,fps] [--work DIR]

Needs Debian's ffmpeg (test media are made from real clips into a temporary folder, never into
the repository) and ../shared/data/realclips. Prints markdown tables.

* rotation: GRID bbaf2n with its audio made 4 frames late, re-encoded with the pixels stored
  turned and a display matrix of 0/90/180/270 degrees (as a phone stores them), plus a portrait
  1080x1920 phone clip (stored 1920x1080, -90); each with ``rotate="auto"`` and forced to 0.
* small: the same clip scaled to a ~40 px face padded into 1920x1080, and the real CNN panel
  (avobjects/media/demo.mp4, kind multi-face).
* fps: real 25 fps clips resampled to 50 and 60 fps (ffmpeg's fps filter duplicates frames),
  each analysed on the 25 fps grid (default) and with every frame (the old behaviour).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import avsync.analysis as analysis
from avsync.face.frame_rate import analysis_rate
from avsync.inference import detect
from avsync.io import shift_audio

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "realclips"
if not REAL.is_dir():
    REAL = Path("/work/shared/data/realclips")
GRID = ROOT / "examples" / "grid_bbaf2n.mp4"
PANEL = REAL / "avobjects/media/demo.mp4"
FPS_CLIPS = [GRID, REAL / "PC-AVS/misc/Audio_Source/00015.mp4",
             REAL / "Real3DPortrait/data/raw/examples/May_5s.mp4"]
STORE = {0: None, 90: "transpose=clock", 180: "hflip,vflip", 270: "transpose=cclock"}
LATE = 4


def ff(*args) -> None:
    subprocess.run(["ffmpeg", "-y", "-v", "error", *map(str, args)], check=True)


def encode(src: Path, out: Path, vf: str | None) -> Path:
    ff("-i", src, *(["-vf", vf] if vf else []), "-c:v", "libx264", "-preset", "veryfast",
       "-crf", "18", "-c:a", "copy", out)
    return out


def phone(src: Path, out: Path, theta: int, pre: str | None = None) -> Path:
    stored = encode(src, out.with_name(out.stem + "_s.mp4"), ",".join(f for f in (pre, STORE[theta]) if f)
                    or None)
    if not theta:
        return stored
    try:
        ff("-display_rotation", theta, "-i", stored, "-c", "copy", out)
    except subprocess.CalledProcessError:  # ffmpeg 5.1
        ff("-i", stored, "-c", "copy", "-metadata:s:v:0", f"rotate={theta}", out)
    return out


def row(label: str, path: Path, **kw) -> str:
    t0 = time.perf_counter()
    try:
        r = detect(path, drift=False, **kw)
    except Exception as exc:  # noqa: BLE001  (a failure is a result here)
        return f"| {label} | error: {exc} | | | | |"
    tracks = sum(1 for t in r.tracks)
    return (f"| {label} | {r.offset_frames:+d} ({r.offset_ms:+.0f} ms) | {r.confidence:.2f} | "
            f"{r.fps:g} | {tracks} | {time.perf_counter() - t0:.0f} |")


HEAD = "| case | offset frames (ms) | confidence | fps | tracks | wall s |\n|---|---|---|---|---|---|"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--what", default="rotation,small,fps")
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    if shutil.which("ffmpeg") is None:
        raise SystemExit("needs ffmpeg")
    work = args.work or Path(tempfile.mkdtemp(prefix="avsync_robust_"))
    what = args.what.split(",")
    late = shift_audio(GRID, work / "late.mp4", -LATE * 40.0, overwrite=True)
    if "rotation" in what:
        print(f"Rotation (GRID bbaf2n, audio {LATE} frames late)\n\n{HEAD}")
        print(row("original (no matrix)", late))
        for theta in (90, 180, 270):
            p = phone(late, work / f"r{theta}.mp4", theta)
            print(row(f"display matrix {theta} (pixels stored turned), auto", p))
            print(row(f"display matrix {theta}, forced --rotate 0", p, rotate=0))
        p = phone(late, work / "portrait.mp4", 270, pre="scale=1080:864,pad=1080:1920:0:528")
        print(row("portrait 1080x1920 phone clip (stored 1920x1080, -90), auto", p))
        print(row("portrait phone clip, forced --rotate 0", p, rotate=0))
    if "small" in what:
        print(f"\nSmall faces\n\n{HEAD}")
        p = encode(late, work / "wide.mp4", "scale=144:116,pad=1920:1080:1200:400:gray")
        print(row(f"GRID face ~40 px in 1920x1080, audio {LATE} late", p))
        print(row("CNN panel avobjects/media/demo.mp4 (1280x720, 15 s)", PANEL))
        print(row("CNN panel, --method avcorr", PANEL, method="avcorr"))
    if "fps" in what:
        print(f"\nFrame rate (in-sync clips re-encoded with ffmpeg -vf fps=R, libx264 crf 18)\n\n{HEAD}")
        for clip in FPS_CLIPS:
            if not clip.is_file():
                continue
            print(row(f"{clip.name} original", clip))
            for rate in (25, 50, 60):
                p = encode(clip, work / f"{clip.stem}_{rate}.mp4", f"fps={rate}")
                print(row(f"{clip.name} {rate} fps", p))
                if rate > 25:
                    analysis.analysis_rate = lambda fps: None
                    print(row(f"{clip.name} {rate} fps, every frame (before)", p))
                    analysis.analysis_rate = analysis_rate


if __name__ == "__main__":
    main()
