"""Peak memory and time of ``avsync detect`` vs input duration (hour-long inputs).

Long inputs are made by looping a real clip (``make_long_clip.make_long``: the ffmpeg concat
demuxer, stream copy: quick, no re-encode), each detection runs in a fresh subprocess that reports its own
peak RSS (``resource.getrusage``), wall time and CPU time (user + system: on a shared machine
the wall time depends on the load, the CPU time much less). Results: one JSON line per run on stdout and,
with ``--report``, a markdown table.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/long_input.py \
        --src ../shared/data/realclips/EDTalk/test_data/pose_source2.mp4 \
        --minutes 1 5 10 60 --method landmark_c3 avcorr --report /tmp/long.md \
        --workdir /work/cache/memory
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, resource, sys, time
from avsync.inference import detect
t0 = time.perf_counter()
r = detect(sys.argv[1], method=sys.argv[2])
wall = time.perf_counter() - t0
n_drift = sum(len(t.drift) for t in r.tracks)
last = max((p.end_s for t in r.tracks for p in t.drift), default=0.0)
print(json.dumps({"offset_frames": r.offset_frames, "confidence": r.confidence,
                  "n_tracks": len(r.tracks), "n_drift": n_drift, "drift_end_s": round(last, 1),
                  "wall_s": round(wall, 1), "timings_s": r.timings_s,
                  "cpu_s": round(sum(resource.getrusage(resource.RUSAGE_SELF)[:2]), 1),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))
"""


def measure(path: Path, method: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path), method], capture_output=True,
                          text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"detect failed on {path}: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", type=Path, required=True, help="A real clip of about 1 minute.")
    ap.add_argument("--minutes", type=int, nargs="+", default=[1, 5, 10])
    ap.add_argument("--method", nargs="+", default=["avcorr"])
    ap.add_argument("--report", type=Path, default=None)
    ap.add_argument("--workdir", type=Path, default=None,
                    help="Keep (and reuse) the long files here, outside the repository "
                         "(default: a temporary folder, deleted).")
    args = ap.parse_args()
    if shutil.which("ffmpeg") is None:
        raise SystemExit("needs the ffmpeg binary")
    from avsync.io import probe

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from make_long_clip import make_long

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.workdir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for minutes in args.minutes:
            path = folder / f"{args.src.stem}_{minutes}min.mp4"
            if not path.is_file():
                make_long([args.src], path, minutes)
            duration_s = probe(path).duration_s
            for method in args.method:
                r = measure(path, method) | {"method": method, "duration_s": round(duration_s, 1)}
                print(json.dumps(r), flush=True)
                rows.append(r)
            if args.workdir is None:
                path.unlink()
    if args.report:
        lines = ["| method | duration (min) | peak RSS (MB) | wall (s) | CPU (s) | CPU s per min | "
                 "offset (fr) | confidence | drift points (last end, s) |",
                 "|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['method']} | {r['duration_s'] / 60:.1f} | {r['peak_rss_mb']:.0f} | "
                         f"{r['wall_s']:.0f} | {r['cpu_s']:.0f} | "
                         f"{r['cpu_s'] / (r['duration_s'] / 60):.1f} | "
                         f"{r['offset_frames']:+.1f} | {r['confidence']:.2f} | "
                         f"{r['n_drift']} ({r['drift_end_s']:.0f}) |")
        args.report.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
