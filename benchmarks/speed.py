"""End-to-end speed of `detect` on CPU: seconds per minute of video, split by stage.

    python benchmarks/speed.py FILE [FILE ...] [--method NAME (default: the package's default)]
        [--reference-src DIR] [--variants before after] [--rounds 1] [--json out.jsonl]

Each (file, variant) runs `detect` in a fresh subprocess; variants alternate within a round
(before, after, before, after, ... with ``--rounds 2``) so a shared, noisy machine loads them
alike, and the table gives each file's before/after wall-time ratio measured side by side.

Variants:
  before  the code under ``--reference-src`` (a ``src`` folder of the code to compare with, e.g.
          ``git archive <commit> src | tar -x -C /tmp/ref``), run as it is;
  after   this checkout's code with its defaults (the face analysis on every usable core,
          face.pipeline);
  seq     this checkout's code on one thread (AVSYNC_THREADS=1: the sequential path);
  fast    this checkout's code with ``detect(..., fast=True)`` where it exists;
  before-fast  the ``--reference-src`` code with ``fast=True``;
  mesh    this checkout's code with ``face_backend="mesh"`` (face.mesh); mesh-fast: and ``fast=True``.

Stages (s per minute of video): decode (PyAV decode + downscale; in the pipelined code it runs
on its own thread, overlapping the rest, so decode + face can exceed the wall time), face
(landmarks + tracking: the wall time of the face analysis not spent waiting for frames), audio
(decode + features), scoring (curves, null distribution for the confidence, drift windows).
CPU s per min: user + system CPU time of the whole run (all threads, imports included, and the
forked child of avsync.forked when there is one) per minute of video: the work done, which a
shared machine's load inflates less than the wall time. RSS: the peak of the process plus the
peak of its child (an upper bound of the two together).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE_SRC = Path(__file__).resolve().parents[1] / "src"

CHILD = r"""
import json, resource, sys, time
from avsync.inference import detect
path, method, kw = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
t0 = time.perf_counter()
r = detect(path, method=method, **kw)
wall = time.perf_counter() - t0
ru = resource.getrusage(resource.RUSAGE_SELF)
kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # the face analysis' forked child (avsync.forked)
print(json.dumps({"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime + kids.ru_utime + kids.ru_stime,
                  "duration_s": r.duration_s,
                  "fps": r.fps, "timings_s": r.timings_s, "offset_frames": r.offset_frames,
                  "confidence": r.confidence, "rss_mib": (ru.ru_maxrss + kids.ru_maxrss) / 1024}))
"""


VARIANT_KW = {"fast": {"fast": True}, "before-fast": {"fast": True},
              "mesh": {"face_backend": "mesh"}, "mesh-fast": {"face_backend": "mesh", "fast": True}}
"""detect's keyword arguments per variant (the others: none)."""


def run_variant(path: Path, variant: str, method: str, reference_src: Path | None) -> dict:
    env = dict(os.environ)
    src = HERE_SRC
    if variant in ("before", "before-fast"):
        if reference_src is None:
            raise SystemExit("--reference-src is needed for the 'before' variant")
        src = reference_src
    if variant == "seq":
        env["AVSYNC_THREADS"] = "1"
    env["PYTHONPATH"] = str(src)
    load0 = os.getloadavg()[0]
    kw = json.dumps(VARIANT_KW.get(variant, {}))
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), method, kw],
                         env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{variant} on {path} failed:\n{out.stderr[-2000:]}")
    row = json.loads(out.stdout.strip().splitlines()[-1])
    row.update(file=path.name, variant=variant, load_before=load0, load_after=os.getloadavg()[0])
    return row


def table_row(r: dict, base_wall: float | None) -> str:
    per_min = 60.0 / r["duration_s"]
    t = r["timings_s"]
    ratio = f"{base_wall / r['wall_s']:.2f}" if base_wall else ""
    return (f"| {r['file']} | {r['variant']} | {r['duration_s']:.1f} | {r['wall_s']:.1f} | "
            f"{r['wall_s'] * per_min:.1f} | {t.get('decode', 0) * per_min:.1f} | "
            f"{t.get('face', 0) * per_min:.1f} | {t.get('audio', 0) * per_min:.1f} | "
            f"{t.get('scoring', 0) * per_min:.1f} | {r.get('cpu_s', float('nan')) * per_min:.1f} | "
            f"{r['duration_s'] / r['wall_s']:.2f} | {ratio} | "
            f"{r['offset_frames']:+.1f} / {r['confidence']:.2f} | {r['rss_mib']:.0f} | "
            f"{r['load_before']:.1f}-{r['load_after']:.1f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--method", default=None,
                    help="default: avsync.models.registry.DEFAULT_METHOD of this checkout (until "
                         "2026-12-06 it was landmark_c3, the package default until 2026-12-02; the "
                         "BENCHMARKS tables since then name --method stacked)")
    ap.add_argument("--reference-src", type=Path, default=None)
    ap.add_argument("--variants", nargs="+", default=["after"],
                    choices=["before", "after", "seq", "fast", "before-fast", "mesh", "mesh-fast"])
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None, help="append every run as a JSON line")
    args = ap.parse_args()
    if args.method is None:
        sys.path.insert(0, str(HERE_SRC))
        from avsync.models.registry import DEFAULT_METHOD

        args.method = DEFAULT_METHOD
    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{datetime.date.today().isoformat()}, method {args.method}\n")
    print("| file | variant | duration s | wall s | s per min of video | decode | face | audio | "
          "scoring | CPU s per min | x real time | speed-up vs first | offset / confidence | "
          "peak RSS MiB | load avg |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for f in args.files:
        for _ in range(args.rounds):
            first_wall = None
            for v in args.variants:
                r = run_variant(f, v, args.method, args.reference_src)
                print(table_row(r, first_wall), flush=True)
                first_wall = first_wall or r["wall_s"]
                if args.json:
                    with args.json.open("a") as fh:
                        fh.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
