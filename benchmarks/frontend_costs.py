"""What the front end of ``detect`` costs per minute of video, piece by piece (CPU seconds).

    python benchmarks/frontend_costs.py VIDEO [--frames 300]

Each piece is timed on its own, in this process, with ``time.process_time`` (all threads):
imports; H.264 decoding in PyAV's three thread modes; decoding + RGB conversion and downscale to
the analysis size (640 px) with several swscale interpolations; ``face.pipeline.prepare`` (grey
image + cut histogram on top); the MediaPipe face landmarker on the first ``--frames`` frames with
4 or 1 faces and with or without blendshapes, and on a face-sized crop of the same frames; and
page faults of ``detect`` on the shipped GRID example with and without
``batch.worker.keep_freed_memory``. Markdown rows on stdout.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def row(piece: str, cpu_s: float, per_min: float, note: str = "") -> None:
    print(f"| {piece} | {cpu_s:.2f} | {cpu_s * per_min:.1f} | {note} |", flush=True)


def decode(path: Path, thread_type: str, fn) -> tuple[float, int]:
    import av

    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        stream.thread_type = thread_type
        c0, n = time.process_time(), 0
        for frame in c.decode(stream):
            fn(frame)
            n += 1
    return time.process_time() - c0, n


FAULTS = """
import resource, sys
if sys.argv[2] == "1":
    from avsync.batch.worker import keep_freed_memory; keep_freed_memory()
from avsync.inference import detect
from avsync.models.registry import DEFAULT_METHOD, create_model
m = create_model(DEFAULT_METHOD); detect(sys.argv[1], method=m)
r0 = resource.getrusage(resource.RUSAGE_SELF)
for _ in range(6): detect(sys.argv[1], method=m)
r1 = resource.getrusage(resource.RUSAGE_SELF)
print((r1.ru_minflt - r0.ru_minflt) / 6, r1.ru_stime - r0.ru_stime)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("video", type=Path)
    ap.add_argument("--frames", type=int, default=300)
    args = ap.parse_args()
    c0 = time.process_time()
    import numpy as np

    import avsync.inference  # noqa: F401  (the import cost of detect)
    from avsync.face.landmarks import face_landmarker_model_path
    from avsync.face.pipeline import prepare
    from avsync.io.frames import iter_video_frames
    from avsync.io.media import probe

    imports = time.process_time() - c0
    info = probe(args.video)
    per_min = 60.0 / info.duration_s
    print(f"{args.video.name}: {info.width}x{info.height}, {info.duration_s:.1f} s, {info.fps:g} fps\n\n"
          "| piece | CPU s | CPU s per minute of video | note |\n|---|---|---|---|")
    row("imports (avsync.inference)", imports, 1.0, "once per process, not per minute")
    for mode in ("AUTO", "NONE", "SLICE"):
        row(f"decode, thread_type {mode}", decode(args.video, mode, lambda f: None)[0], per_min)
    w, h = info.width, info.height
    scale = 640 / max(w, h)
    nw, nh = round(w * scale), round(h * scale)
    for interp in ("AREA", "BILINEAR", "FAST_BILINEAR", "POINT", "BICUBIC"):
        cpu, _ = decode(args.video, "AUTO", lambda f, i=interp: f.to_ndarray(
            format="rgb24", width=nw, height=nh, interpolation=i))
        row(f"decode + RGB {nw}x{nh}, {interp}", cpu, per_min)
    c0 = time.process_time()
    for f in iter_video_frames(args.video, lazy=True):
        prepare(f)
    row("decode + RGB + grey + histogram (face.pipeline.prepare)", time.process_time() - c0, per_min)

    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    frames = [f.image.copy() for f, _ in zip(iter_video_frames(args.video), range(args.frames), strict=False)]
    boxes: list = []

    def landmarker(images: list, faces: int, shapes: bool, label: str) -> None:
        opts = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(face_landmarker_model_path())),
            running_mode=vision.RunningMode.VIDEO, num_faces=faces, output_face_blendshapes=shapes)
        with vision.FaceLandmarker.create_from_options(opts) as lm:
            c0 = time.process_time()
            for i, im in enumerate(images):
                res = lm.detect_for_video(mp.Image(image_format=mp.ImageFormat.SRGB,
                                                   data=np.ascontiguousarray(im)), int(i * 1000 / info.fps))
                if label == "first":
                    h, w = im.shape[:2]
                    boxes.extend((min(p.x for p in f) * w, min(p.y for p in f) * h, max(p.x for p in f) * w,
                                  max(p.y for p in f) * h) for f in res.face_landmarks)
            cpu = time.process_time() - c0
        size = f"{images[0].shape[1]}x{images[0].shape[0]}"
        what = f"{size} face crop" if label == "crop" else f"{len(images)} frames"
        row(f"landmarker, {faces} face(s), blendshapes {'on' if shapes else 'off'} ({what})",
            cpu, info.fps * 60 / len(images), f"{1000 * cpu / len(images):.2f} ms per frame")

    for faces, shapes in ((4, True), (4, False), (1, True), (1, False)):
        landmarker(frames, faces, shapes, "first" if not boxes else "")
    if boxes:  # the same frames cut to a square 1.6x the union of the faces found (a face ROI)
        b = np.array(boxes)
        cx, cy = (b[:, 0].min() + b[:, 2].max()) / 2, (b[:, 1].min() + b[:, 3].max()) / 2
        side = int(1.6 * max(b[:, 2].max() - b[:, 0].min(), b[:, 3].max() - b[:, 1].min()))
        x0, y0 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
        crops = [np.ascontiguousarray(im[y0:y0 + side, x0:x0 + side]) for im in frames]
        for faces in (4, 1):
            landmarker(crops, faces, True, "crop")
    example = ROOT / "examples" / "grid_bbaf2n.mp4"
    for keep in ("0", "1"):
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1", AVSYNC_THREADS="1")
        out = subprocess.run([sys.executable, "-c", FAULTS, str(example), keep], capture_output=True,
                             text=True, env=env, check=True)
        faults, sys_s = out.stdout.split()
        print(f"\n`detect` on the GRID example, keep_freed_memory {'on' if keep == '1' else 'off'}: "
              f"{float(faults):.0f} page faults per run, {float(sys_s):.2f} s system CPU over 6 runs")


if __name__ == "__main__":
    main()
