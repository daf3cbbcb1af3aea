"""An experiment: MediaPipe's older, lighter face mesh in place of the default's (issue 14).

    python benchmarks/lite_mesh.py VIDEO [VIDEO ...] [--frames 300]
    python benchmarks/lite_mesh.py VIDEO [VIDEO ...] --end-to-end [--rounds 2] [--method NAME]

``face.mesh.MeshTracker`` runs the face mesh of MediaPipe's FaceLandmarker bundle (256 px input,
478 points with the irises, ~4.2 ms a frame here). MediaPipe's older face mesh
(``mediapipe/modules/face_landmark/face_landmark.tflite`` in the ``mediapipe`` 0.10.x wheels: 192 px
input, 468 points, no irises) is the same topology for points 0-467. Not shipped; to try it:

    pip download mediapipe==0.10.14 --no-deps -d /tmp/mpw
    unzip -j /tmp/mpw/mediapipe-0.10.14-*.whl \
        mediapipe/modules/face_landmark/face_landmark.tflite -d /work/cache/lite

:class:`LiteMeshTracker` is ``MeshTracker`` (same detector, same tracking rule, same blendshape
model) with that mesh; the ten iris points the blendshape model reads are placed from the eye
contours (centre: the contour's mean; four points at 0.23 eye widths along and across the eye,
the proportions of the 478-point mesh on a frontal face). This script compares it with the
default on the first ``--frames`` frames of each VIDEO (one face; frames where each finds it):
CPU per frame (``mesh_frontend.run``), the median distance of the 40 lip points the ``landmark``
model reads (``face.tracks.lip_points``: centred, in inter-ocular distances) to the default's, and
how the lip aperture and ``jawOpen`` signals (and their frame-to-frame changes) correlate with
the default's. ``benchmarks/
prepare_fast.py --face-backend mesh-lite`` builds a training cache with it for the
cross-validation (``cv.py --variant mesh-lite``). ``--end-to-end``: ``detect`` on each VIDEO in
fresh processes with its defaults, alternately with the default mesh and with this one (``mesh``,
``lite``, ``mesh``, ...): wall and CPU seconds per minute of video, offset and confidence.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from avsync.face.mesh import MeshTracker, crop_matrix  # noqa: E402

LITE_MODEL = Path(os.environ.get("AVSYNC_LITE_MESH", "/work/cache/lite/face_landmark.tflite"))
"""The older mesh's file (module doc says where it comes from)."""

LITE_SIDE: int = 192
"""Its input: a LITE_SIDE x LITE_SIDE RGB crop in [0, 1]."""

EYES: tuple[tuple[tuple[int, ...], int, int], ...] = (
    ((33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246), 33, 133),
    ((263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466), 362, 263),
)
"""Per iris (points 468-472, then 473-477): its eye's contour, then the eye's corners on the
image's left and right (the iris ring's first point lies towards the right one)."""

IRIS_RADIUS_EYE_WIDTHS: float = 0.23
"""The iris ring's radius in eye widths (8.5 px for a 35 px eye on a frontal 478-point mesh)."""


def iris_points(xy: np.ndarray) -> np.ndarray:
    """(10, 2) iris points placed from the eye contours of (468, 2) mesh points (module doc)."""
    out = []
    for contour, left, right in EYES:
        c = xy[list(contour)].mean(axis=0)
        axis = xy[right] - xy[left]
        width = float(np.hypot(*axis)) or 1.0
        u = axis / width
        v = np.array([-u[1], u[0]])  # across the eye, pointing down the image
        r = IRIS_RADIUS_EYE_WIDTHS * width
        out += [c, c + r * u, c - r * v, c - r * u, c + r * v]
    return np.array(out)


class LiteMeshTracker(MeshTracker):
    """``MeshTracker`` with MediaPipe's older 192 px, 468-point mesh (module doc)."""

    def __init__(self, max_faces: int = 4, min_confidence: float = 0.5, model: Path = LITE_MODEL) -> None:
        super().__init__(max_faces, min_confidence)
        from ai_edge_litert.interpreter import Interpreter

        if not model.is_file():
            raise SystemExit(f"{model}: the older face mesh is not there (see this script's doc)")
        self._lite = Interpreter(model_path=str(model), num_threads=1)
        self._lite.allocate_tensors()
        self._lite_in = self._lite.get_input_details()[0]["index"]
        outs = {int(o["shape"][-1]): o["index"] for o in self._lite.get_output_details()}
        self._lite_points, self._lite_presence = outs[468 * 3], outs[1]

    def landmarks(self, image: np.ndarray, roi) -> tuple[np.ndarray, float]:
        import cv2

        m = crop_matrix(roi, LITE_SIDE)
        crop = cv2.warpAffine(image, m, (LITE_SIDE, LITE_SIDE),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
        self._lite.set_tensor(self._lite_in, (crop.astype(np.float32) * (1 / 255.0))[None])
        self._lite.invoke()
        uv = self._lite.get_tensor(self._lite_points).reshape(468, 3)[:, :2]
        logit = float(self._lite.get_tensor(self._lite_presence).ravel()[0])
        xy = (uv - 0.5) @ m[:, :2].T + m[:, 2] + 0.5
        xy = np.vstack([xy, iris_points(xy)])
        return xy.astype(np.float32), 1.0 / (1.0 + math.exp(-logit))


def use_lite_backend(name: str = "mesh-lite") -> None:
    """Make ``create_landmarker(name)`` build a LiteMeshTracker in this process (the package's
    analysis looks the factory up in avsync.face.landmarks and avsync.analysis)."""
    import avsync.analysis
    import avsync.face.landmarks as landmarks

    original = landmarks.create_landmarker

    def create(backend: str = landmarks.DEFAULT_BACKEND, max_faces: int = 4):
        return LiteMeshTracker(max_faces=max_faces) if backend == name else original(backend, max_faces)

    landmarks.create_landmarker = create
    avsync.analysis.create_landmarker = create


def compare(path: Path, n: int) -> str:
    """One markdown row: the default mesh against the lite one on the first ``n`` frames."""
    from mesh_frontend import run

    from avsync.face.landmarks import BLENDSHAPE_NAMES
    from avsync.face.mouth import GEOMETRY_NAMES, geometry_signals
    from avsync.face.tracks import lip_points
    from avsync.io.frames import iter_video_frames

    frames = [f.image.copy() for f, _ in zip(iter_video_frames(path), range(n), strict=False)]
    ref, ms_ref = run(MeshTracker(max_faces=1), frames)
    lite, ms_lite = run(LiteMeshTracker(max_faces=1), frames)
    both = [i for i in range(len(frames)) if len(ref[i]) == 1 and len(lite[i]) == 1]
    if len(both) < 3:
        return f"| {path.name} | {len(both)} / {len(frames)} | | | | |"
    a, j = GEOMETRY_NAMES.index("aperture"), BLENDSHAPE_NAMES.index("jawOpen")
    pairs = [(ref[i][0], lite[i][0]) for i in both]
    dist = [np.linalg.norm(lip_points(r.landmarks).astype(np.float64) - lip_points(m.landmarks),
                           axis=1).mean() for r, m in pairs]

    def corr(values) -> str:
        x, y = np.array([values(r) for r, _ in pairs]), np.array([values(m) for _, m in pairs])
        return f"{np.corrcoef(x, y)[0, 1]:.3f} / {np.corrcoef(np.diff(x), np.diff(y))[0, 1]:.3f}"

    return (f"| {path.name} | {len(both)} / {len(frames)} | {ms_ref:.2f} -> {ms_lite:.2f} | "
            f"{np.median(dist):.4f} | {corr(lambda f: geometry_signals(f.landmarks)[a])} | "
            f"{corr(lambda f: f.blendshapes[j])} |")


DETECT = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[3])
if sys.argv[2] == "lite":
    from lite_mesh import use_lite_backend
    use_lite_backend("mesh")
from avsync.inference import detect
from avsync.models.registry import DEFAULT_METHOD
t0 = time.perf_counter()
r = detect(sys.argv[1], method=sys.argv[4] or DEFAULT_METHOD)
wall = time.perf_counter() - t0
ru, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime + kids.ru_utime + kids.ru_stime,
                  "duration_s": r.duration_s, "offset": r.offset_frames, "confidence": r.confidence}))
"""


def end_to_end(videos: list[Path], rounds: int, method: str) -> None:
    """``detect`` in fresh processes, the default mesh and the lite one alternately (module doc)."""
    import json
    import subprocess

    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    print("| clip | mesh | wall s per min | CPU s per min | offset / confidence |\n|---|---|---|---|---|")
    for v in videos:
        for _ in range(rounds):
            for which in ("mesh", "lite"):
                out = subprocess.run([sys.executable, "-c", DETECT, str(v), which, str(ROOT / "benchmarks"),
                                      method], env=env, capture_output=True, text=True, check=True)
                r = json.loads(out.stdout.strip().splitlines()[-1])
                k = 60.0 / r["duration_s"]
                print(f"| {v.name} | {which} | {r['wall_s'] * k:.1f} | {r['cpu_s'] * k:.1f} | "
                      f"{r['offset']:+.1f} / {r['confidence']:.2f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("videos", nargs="+", type=Path)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--end-to-end", action="store_true")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--method", default="", help="--end-to-end: default the package's")
    args = ap.parse_args()
    if args.end_to_end:
        end_to_end(args.videos, args.rounds, args.method)
        return
    print("| clip | frames with a face in both | CPU ms per frame, mesh -> lite | lip shape distance, "
          "median (inter-ocular) | aperture corr: values / changes | jawOpen corr: values / changes |\n"
          "|---|---|---|---|---|---|")
    for v in args.videos:
        print(compare(v, args.frames), flush=True)


if __name__ == "__main__":
    main()
