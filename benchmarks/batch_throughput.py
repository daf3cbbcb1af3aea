"""Throughput of ``avsync batch``: 1 vs 2 workers, local vs Ray, on short real clips.

    OMP_NUM_THREADS=1 python benchmarks/batch_throughput.py [--clips ../shared/data/realclips]
        [--limit 12] [--max-duration-s 6] [--method landmark_c3] [--repeats 2] [--json out.json]

Runs the configurations interleaved (local-1, local-2, ray-1, ray-2, then again), each over the
same clips into a fresh results file, and prints one markdown row per run and the medians:
video-minutes per wall-minute (start-up included: pool spawn or actor start + model load) and per
worker CPU-minute (sum of ``timings_s.cpu``, the workers' own CPU, all threads), plus the load
average around each run (the machine may be shared). Ray is started once (``ray.init`` timed
separately) and reused, as a long-lived cluster would be.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from avsync.batch import read_results, run_batch  # noqa: E402


def pick_clips(root: Path, limit: int, max_duration_s: float) -> list[Path]:
    """Real clips of at most max_duration_s, spread evenly over the manifest's order."""
    with open(root / "MANIFEST.tsv", newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t")
                if r["kind"] == "real" and float(r["duration_s"]) <= max_duration_s]
    step = max(1, len(rows) // limit)
    return [root / r["path"] for r in rows[::step][:limit]]


LAST_ROWS: list[dict] = []


def one_run(engine: str, workers: int, clips: list[Path], method: str) -> dict:
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.jsonl"
        t0 = time.perf_counter()
        summary = run_batch([str(c) for c in clips], out, engine=engine, workers=workers, method=method)
        wall = time.perf_counter() - t0
        rows = read_results(out)
    LAST_ROWS[:] = rows
    video = sum(float(r.get("duration_s") or 0) for r in rows)
    cpu = sum(float((r.get("timings_s") or {}).get("cpu") or 0) for r in rows)
    return {"engine": engine, "workers": workers, "inputs": len(rows), "failed": summary.failed,
            "video_s": round(video, 2), "wall_s": round(wall, 2), "worker_cpu_s": round(cpu, 2),
            "video_min_per_wall_min": round(video / wall, 3), "video_min_per_cpu_min": round(video / cpu, 3),
            "load_before": round(load0, 2), "load_after": round(os.getloadavg()[0], 2)}


STARTUP = ("import time, sys; sys.path.insert(0, sys.argv[1]); t0 = time.perf_counter()\n"
           "from avsync.batch.worker import WorkerConfig, init_worker\n"
           "init_worker(WorkerConfig(sys.argv[2]))\n"
           "print(time.process_time(), time.perf_counter() - t0)")


def worker_startup(method: str) -> tuple[float, float]:
    """(CPU s, wall s) for a fresh worker process to import avsync and build the model."""
    import subprocess

    out = subprocess.run([sys.executable, "-c", STARTUP, str(ROOT / "src"), method], check=True,
                         capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    cpu, wall = map(float, out.stdout.split()[-2:])
    return round(cpu, 2), round(wall, 2)


def projected_speedup(cpu_per_input_s: list[float], startup_cpu_s: float, workers: int) -> float:
    """Idle-machine wall(1 worker) / wall(n workers), from measured CPU: every worker pays the
    start-up, inputs go to whichever worker is free first (longest first is not assumed)."""
    def wall(n: int) -> float:
        free = [startup_cpu_s] * n
        for c in cpu_per_input_s:
            i = free.index(min(free))
            free[i] += c
        return max(free)

    return round(wall(1) / wall(workers), 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=Path, default=ROOT.parent / "shared" / "data" / "realclips")
    ap.add_argument("--limit", type=int, default=12)
    ap.add_argument("--max-duration-s", type=float, default=6.0)
    ap.add_argument("--method", default=None)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--configs", default="local-1,local-2,ray-1,ray-2")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    from avsync.models.registry import DEFAULT_METHOD

    method = args.method or DEFAULT_METHOD
    clips = pick_clips(args.clips, args.limit, args.max_duration_s)
    configs = [(c.split("-")[0], int(c.split("-")[1])) for c in args.configs.split(",")]
    ray_init_s = None
    if any(e == "ray" for e, _ in configs):
        import ray

        t0 = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
        ray_init_s = round(time.perf_counter() - t0, 2)
    print(f"{len(clips)} clips, method {method}, ray.init {ray_init_s} s", flush=True)
    print("| run | engine | workers | video s | wall s | worker CPU s | video-min/wall-min | "
          "video-min/CPU-min | load avg before/after |\n|---|---|---|---|---|---|---|---|---|", flush=True)
    runs = []
    for rep in range(args.repeats):
        for engine, workers in configs:
            r = one_run(engine, workers, clips, method)
            r["repeat"] = rep
            runs.append(r)
            print(f"| {rep} | {engine} | {workers} | {r['video_s']} | {r['wall_s']} | {r['worker_cpu_s']} | "
                  f"{r['video_min_per_wall_min']} | {r['video_min_per_cpu_min']} | {r['load_before']}/"
                  f"{r['load_after']} |", flush=True)
    med = {}
    for engine, workers in configs:
        sel = [r for r in runs if (r["engine"], r["workers"]) == (engine, workers)]
        med[f"{engine}-{workers}"] = {k: statistics.median(r[k] for r in sel)
                                      for k in ("wall_s", "video_min_per_wall_min", "video_min_per_cpu_min")}
    startup = worker_startup(method)
    per_input = [float((r.get("timings_s") or {}).get("cpu") or 0) for r in LAST_ROWS]
    proj = {n: projected_speedup(per_input, startup[0], n) for n in (2,)}
    print(json.dumps({"median": med, "worker_startup_cpu_wall_s": startup,
                      "projected_idle_speedup": proj}, indent=1))
    if args.json is not None:
        args.json.write_text(json.dumps({"clips": [str(c) for c in clips], "method": method,
                                         "ray_init_s": ray_init_s, "runs": runs, "median": med,
                                         "worker_startup_cpu_wall_s": startup,
                                         "projected_idle_speedup": proj}, indent=1))


if __name__ == "__main__":
    main()
