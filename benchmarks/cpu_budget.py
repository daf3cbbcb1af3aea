"""Where the CPU of ``detect`` goes, piece by piece, against the issue's 2-core budget.

    python benchmarks/cpu_budget.py VIDEO [--method NAME] [--rounds 1]

Every piece is the default code path run on its own, on one thread where the code allows
(``AVSYNC_THREADS=1``, one torch thread), timed with ``time.process_time`` (all threads of this
process) or, inside the face analysis, ``time.thread_time`` of the thread calling the piece:

* start-up: a fresh interpreter importing what ``avsync detect`` imports (the CLI, then torch
  for a trained method), as a subprocess's CPU;
* decoding: PyAV decoding every frame with the pipeline's thread settings, nothing else;
* the face analysis on one thread (``inference.analyse_video``), split by timing the calls of
  the face models (``face.mesh.MeshTracker``: the mesh with its crop, the blendshapes, the
  detector), the conversion to 640 px RGB (``io.frames._to_rgb``), and the rest (tracking, mouth
  crops, lip flow, cut histogram, the glue) as what is left once decoding is taken off;
* audio features (``inference.analyse_audio``);
* scoring (``inference.synchronise`` on that analysis): the curve alone, with the null rolls,
  and with the drift windows too (the default);
* the whole ``detect`` in a fresh process with its defaults (both cores, the forked face
  analysis), as ``benchmarks/speed.py`` runs it.

Prints a Markdown table in CPU seconds per minute of video and the wall time the pieces allow
on two cores if nothing else were paid.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"

IMPORTS = """
import resource, sys, time
import avsync.cli, avsync.inference
if sys.argv[1] == "1":
    import torch
ru = resource.getrusage(resource.RUSAGE_SELF)
print(ru.ru_utime + ru.ru_stime)
"""

WHOLE = """
import json, resource, sys
from avsync.inference import detect
r = detect(sys.argv[1], method=sys.argv[2])
ru, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"cpu_s": ru.ru_utime + ru.ru_stime + kids.ru_utime + kids.ru_stime,
                  "offset": r.offset_frames, "confidence": r.confidence}))
"""


def _subprocess(code: str, *args: str, one_thread: bool = False) -> str:
    env = dict(os.environ, PYTHONPATH=str(SRC))
    if one_thread:
        env.update(AVSYNC_THREADS="1", OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True,
                         text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def timed_calls(owner: object, name: str, totals: dict, key: str) -> None:
    """Wrap ``owner.name`` so that each call adds its thread CPU time to ``totals[key]``."""
    fn = getattr(owner, name)

    def wrapper(*a, **kw):
        t0 = time.thread_time()
        try:
            return fn(*a, **kw)
        finally:
            totals[key] = totals.get(key, 0.0) + time.thread_time() - t0

    setattr(owner, name, wrapper)


def decode_only(path: Path) -> float:
    """CPU s of decoding every frame as ``io.media`` does (its thread settings), nothing else."""
    from avsync.io.frames import iter_video_frames

    c0 = time.process_time()
    for _ in iter_video_frames(path, lazy=True):  # lazy: no conversion
        pass
    return time.process_time() - c0


def face_pieces(path: Path) -> tuple[dict, object]:
    """The one-thread face analysis' CPU split into pieces (module doc), and the analysis."""
    import avsync.io.frames as frames
    from avsync.face.mesh import MeshTracker
    from avsync.inference import analyse_video

    totals: dict = {}
    timed_calls(MeshTracker, "landmarks", totals, "face mesh (crop + model)")
    timed_calls(MeshTracker, "blendshapes", totals, "blendshape model")
    timed_calls(MeshTracker, "find_faces", totals, "face detector (every 5th frame)")
    timed_calls(frames, "_to_rgb", totals, "conversion to 640 px RGB (swscale)")
    c0 = time.process_time()
    analysis = analyse_video(path, keep_crops=True)
    totals["face analysis, one thread, in all"] = time.process_time() - c0
    return totals, analysis


def scoring_pieces(analysis, audio, fps: float, method: str) -> dict:
    import numpy as np

    from avsync.inference import synchronise
    from avsync.models.registry import create_model

    out = {}
    for label, kw in (("curve only", dict(n_null=0, drift=False)),
                      ("+ null rolls", dict(drift=False)), ("+ drift windows (the default)", {})):
        model = create_model(method)
        c0 = time.process_time()
        with np.errstate(all="ignore"), warnings.catch_warnings():  # no rolls: no confidence
            warnings.simplefilter("ignore", RuntimeWarning)
            synchronise(analysis, audio, fps, model, **kw)
        out[f"scoring: {label}"] = time.process_time() - c0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("video", type=Path)
    ap.add_argument("--method", default=None, help="default: the package's default method")
    args = ap.parse_args()
    os.environ.update(AVSYNC_THREADS="1", AVSYNC_FORK="0")
    sys.path.insert(0, str(SRC))
    import torch

    from avsync.inference import analyse_audio
    from avsync.io.media import probe
    from avsync.models.registry import DEFAULT_METHOD, create_model, needs_neural

    torch.set_num_threads(1)
    method = args.method or DEFAULT_METHOD
    info = probe(args.video)
    per_min = 60.0 / info.duration_s
    neural = needs_neural(create_model(method))
    rows: list[tuple[str, float, bool]] = []  # (piece, CPU s, scales with the video's length)
    rows.append(("start-up: interpreter + imports" + (" + torch" if neural else ""),
                 float(_subprocess(IMPORTS, "1" if neural else "0", one_thread=True)), False))
    decode = decode_only(args.video)
    rows.append(("H.264 decoding", decode, True))
    face, analysis = face_pieces(args.video)
    whole_face = face.pop("face analysis, one thread, in all")
    rows += [(k, v, True) for k, v in face.items()]
    rows.append(("the rest of the face analysis: tracking, mouth crops, lip flow, cut histogram, glue",
                 whole_face - decode - sum(face.values()), True))
    c0 = time.process_time()
    audio = analyse_audio(args.video, logmel=neural)
    rows.append(("audio features", time.process_time() - c0, True))
    fps = analysis.rate_fps or info.fps
    scoring = scoring_pieces(analysis, audio, fps, method)
    prev = 0.0
    for k, v in scoring.items():
        rows.append((k, v - prev, True))
        prev = v
    whole = json.loads(_subprocess(WHOLE, str(args.video), method))

    print(f"{args.video.name}: {info.width}x{info.height}, {info.duration_s:.1f} s, {info.fps:g} fps; "
          f"method {method}; {os.cpu_count()} cores\n")
    print("| piece | CPU s per minute of video |\n|---|---|")
    total = 0.0
    for piece, cpu, scales in rows:
        v = cpu * per_min if scales else cpu
        total += v
        print(f"| {piece} | {v:.2f} |")
    print(f"| **sum of the pieces** | **{total:.2f}** |")
    print(f"| the whole `detect`, defaults, fresh process (offset {whole['offset']:+.1f}, "
          f"confidence {whole['confidence']:.2f}) | {whole['cpu_s'] * per_min:.2f} |")
    models = sum(cpu for piece, cpu, _ in rows if "model" in piece or "mesh" in piece or "detector" in piece)
    print(f"\nOn 2 cores, if nothing else were paid: the face models alone "
          f"{models * per_min / 2:.1f} s per minute, + decoding {(models + decode) * per_min / 2:.1f} s, "
          f"all the pieces {total / 2:.1f} s (the issue's goal: 6 s, its floor: 10 s).")


if __name__ == "__main__":
    main()
