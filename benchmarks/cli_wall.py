"""The whole ``avsync detect FILE`` process as a user times it: start-up, imports, the run, exit.

    python benchmarks/cli_wall.py --reference-src DIR [--rounds 3] [--method NAME] FILE [FILE ...]

Runs ``python -m avsync.cli detect FILE --json --no-progress`` with ``PYTHONPATH`` set to the
``--reference-src`` folder ("before") and to this checkout's ``src`` ("after"), alternating
(before, after, before, after, ...) within each round, and prints per file the wall time of each
process from start to exit, the CPU of the process and its children (the forked face analysis,
avsync.forked), the answer, and each after/before pair's ratio. ``speed.py`` times ``detect``
alone inside a process; this includes what the interpreter's start-up and exit cost.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE_SRC = Path(__file__).resolve().parents[1] / "src"


def run(src: Path, path: Path, method: str | None) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src))
    cmd = [sys.executable, "-m", "avsync.cli", "detect", str(path), "--json", "--no-progress"]
    if method:
        cmd += ["--method", method]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    r = json.loads(lines[-1]) if lines else {"error": out.stderr.strip()[-200:]}
    return {"wall_s": wall, "cpu_s": cpu, "rc": out.returncode, "offset_frames": r.get("offset_frames"),
            "confidence": r.get("confidence"), "error": r.get("error")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", type=Path, nargs="+")
    ap.add_argument("--reference-src", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--method", default=None)
    args = ap.parse_args()
    print(f"{os.uname().machine}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print("| file | before: wall s (CPU s) | after: wall s (CPU s) | after vs before, pair by pair | "
          "offset / confidence |\n|---|---|---|---|---|")
    for path in args.files:
        pairs = [(run(args.reference_src, path, args.method), run(HERE_SRC, path, args.method))
                 for _ in range(args.rounds)]

        def cell(rs: list[dict]) -> str:
            return ", ".join(f"{r['wall_s']:.2f} ({r['cpu_s']:.1f})" for r in rs)

        def answer(r: dict) -> str:
            return r["error"] or f"{r['offset_frames']:+.1f} / {r['confidence']:.2f}"

        b, a = [p[0] for p in pairs], [p[1] for p in pairs]
        ratios = ", ".join(f"{x['wall_s'] / y['wall_s']:.2f}x" for x, y in zip(b, a, strict=True))
        was, now = "; ".join(sorted({answer(r) for r in b})), "; ".join(sorted({answer(r) for r in a}))
        same = f"{now} (the same)" if was == now else f"{was} -> {now}"
        print(f"| {path.name} | {cell(b)} | {cell(a)} | {ratios} | {same} |", flush=True)


if __name__ == "__main__":
    main()
