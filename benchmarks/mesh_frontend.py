"""The ``mesh`` face backend against MediaPipe's graph on the same frames: CPU and landmarks.

    python benchmarks/mesh_frontend.py VIDEO [VIDEO ...] [--frames 300]

For the first ``--frames`` frames of each video (640 px, as ``detect`` analyses them), runs
MediaPipe's FaceLandmarker graph with 4 faces (``mediapipe``, the default until 2026-12-06) and
with 1 face (its single-face tracking mode, smoothed), and face.mesh's ``MeshTracker`` with 4
faces (``mesh``, the default since). Prints per video: CPU ms per frame of each, frames with a
face, and for the lip points (40 MediaPipe indices): the median distance between backends in
inter-ocular distances, and the frame-to-frame jitter (mean norm of the second difference, px).
First, the CPU time of one call of each of the three models alone (LiteRT, one thread, 200 calls
on random input).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

LIPS = [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146,
        78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95]


def run(landmarker, frames) -> tuple[list, float]:
    c0 = time.process_time()
    out = [landmarker.detect(im, i / 25.0) for i, im in enumerate(frames)]
    ms = (time.process_time() - c0) / len(frames) * 1000
    landmarker.close()
    return out, ms


def nearest(faces, ref):
    """The face of ``faces`` nearest to ``ref`` (within one face width), else None."""
    if not faces:
        return None
    d = [np.linalg.norm(f.landmarks.mean(0) - ref.landmarks.mean(0)) for f in faces]
    i = int(np.argmin(d))
    return faces[i] if d[i] < ref.box[2] - ref.box[0] else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("videos", nargs="+", type=Path)
    ap.add_argument("--frames", type=int, default=300)
    args = ap.parse_args()
    from avsync.face.landmarks import MediaPipeLandmarker
    from avsync.face.mesh import MeshTracker
    from avsync.io.frames import iter_video_frames

    tracker = MeshTracker(max_faces=1)
    for name, it, idx in (("face mesh", tracker._mesh, tracker._mesh_in),
                          ("face detector", tracker._det, tracker._det_in),
                          ("blendshapes", tracker._blend, tracker._blend_in)):
        shape = it.get_input_details()[0]["shape"]
        x = np.random.default_rng(0).random(shape, np.float32)
        it.set_tensor(idx, x)
        it.invoke()
        c0 = time.process_time()
        for _ in range(200):
            it.set_tensor(idx, x)
            it.invoke()
        ms = (time.process_time() - c0) / 200 * 1000
        print(f"{name} {tuple(int(v) for v in shape[1:])}: {ms:.2f} ms of CPU a call")
    print()
    print("| video | frames | CPU ms/frame: mediapipe 4 / mediapipe 1 / mesh | frames with a face: "
          "mediapipe / mesh | lips, mesh vs mediapipe (IOD) | lips, mediapipe 1 vs 4 (IOD) | "
          "lip jitter px: mediapipe / mesh |\n|---|---|---|---|---|---|---|")
    for path in args.videos:
        frames = [np.ascontiguousarray(f.image) for _, f in zip(range(args.frames), iter_video_frames(path),
                                                                 strict=False)]
        mp4, t4 = run(MediaPipeLandmarker(max_faces=4), frames)
        mp1, t1 = run(MediaPipeLandmarker(max_faces=1), frames)
        mesh, tm = run(MeshTracker(max_faces=4), frames)
        d_mesh, d_one, jit = [], [], {"mediapipe": [], "mesh": []}
        prev: dict = {}
        for r4, r1, rm in zip(mp4, mp1, mesh, strict=True):
            if len(r4) != 1:
                prev = {}
                continue
            a = r4[0]
            iod = float(np.linalg.norm(a.landmarks[33] - a.landmarks[263]))
            m, o = nearest(rm, a), nearest(r1, a)
            if m is not None:
                d_mesh.append(np.linalg.norm(a.landmarks[LIPS] - m.landmarks[LIPS], axis=1).mean() / iod)
            if o is not None:
                d_one.append(np.linalg.norm(a.landmarks[LIPS] - o.landmarks[LIPS], axis=1).mean() / iod)
            for name, f in (("mediapipe", a), ("mesh", m)):
                if f is None:
                    prev.pop(name, None)
                    continue
                hist = prev.setdefault(name, [])
                hist.append(f.landmarks[LIPS])
                if len(hist) >= 3:
                    jit[name].append(np.linalg.norm(hist[-1] - 2 * hist[-2] + hist[-3], axis=1).mean())
                    hist.pop(0)
        with_face = f"{sum(bool(r) for r in mp4)} / {sum(bool(r) for r in mesh)}"
        print(f"| {path.name} | {len(frames)} | {t4:.2f} / {t1:.2f} / {tm:.2f} | {with_face} | "
              f"{np.median(d_mesh):.3f} | {np.median(d_one):.3f} | "
              f"{np.mean(jit['mediapipe']):.2f} / {np.mean(jit['mesh']):.2f} |", flush=True)


if __name__ == "__main__":
    main()
