"""Throughput of ``avsync batch``: 1 vs 2 workers, local vs Ray, on a short and a longer batch.

    OMP_NUM_THREADS=1 python benchmarks/batch_throughput.py [--clips ../shared/data/realclips]
        [--batches short=20x10,long=36x20] [--configs local-1,local-2,ray-1,ray-2] [--repeats 1]
        (config suffixes: p driver pinned to one CPU, u --no-pin, f --fast; e.g. local-2f)
        [--method M] [--json out.json] [--md out.md]

A batch ``NAMExK`` (``short=20x10``) is N real clips of at most K seconds of the shared
``MANIFEST.tsv``, spread evenly over it, given to ``run_batch`` as plain files (so their
durations are read from the headers, as for a folder). For each batch the configurations run
one after the other, each a fresh ``run_batch`` into a fresh results file (worker start-up and
model load included), Ray started once before (``ray.init`` timed apart) and reused, as a
long-lived cluster would be. Printed and written: one markdown row per run, the 2-vs-1 and
Ray-vs-local ratios per batch, and the load average before and after each run: on a shared
machine (load above ~1 on 2 cores) the wall-clock ratios mean little. About 6 minutes on an
idle 2-core machine with the defaults.

Columns: video-minutes per wall-minute; per worker CPU-minute (sum of ``timings_s.cpu``: each
worker process's CPU for the input, all its threads, start-up excluded); driver CPU (this
process: listing, probing, scheduling, writing; for Ray also the in-process core worker) and the
CPU of Ray's own daemons (gcs_server, raylet, ...) during the run; cores used = (worker CPU +
workers x start-up CPU) / wall, which shows whether one worker already keeps more than one core
busy (its native libraries' own threads): that bounds the 2-vs-1 ratio to 2 / (that figure).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from avsync.batch import read_results, run_batch  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def pick_clips(root: Path, limit: int, max_duration_s: float) -> list[Path]:
    """Real clips of at most max_duration_s, spread evenly over the manifest's order."""
    with open(root / "MANIFEST.tsv", newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh, delimiter="\t")
                if r["kind"] == "real" and float(r["duration_s"]) <= max_duration_s]
    step = max(1, len(rows) // limit)
    return [root / r["path"] for r in rows[::step][:limit]]


def uptime() -> str:
    """The load averages (1, 5, 15 min), as `uptime` prints them."""
    return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def _proc_cpu_s(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _descendants() -> dict[int, str]:
    """pid -> command name of every live descendant of this process (Linux /proc)."""
    parent: dict[int, int] = {}
    names: dict[int, str] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        pid = int(stat.parent.name)
        names[pid] = text[text.index("(") + 1:text.rindex(")")]
        parent[pid] = int(text.rsplit(")", 1)[1].split()[1])
    me, out = os.getpid(), {}
    for pid in parent:
        p, seen = pid, 0
        while p in parent and p != me and seen < 64:
            p, seen = parent[p], seen + 1
        if p == me and pid != me:
            out[pid] = names[pid]
    return out


def daemons_cpu_s() -> dict[int, float]:
    """CPU seconds so far of this process's descendants other than Ray's task/actor workers
    ("ray::..."): gcs_server, raylet, its Python monitors (only those alive before and after a
    run are counted, so the pool's and the actors' processes, which come and go, are not)."""
    out = {}
    for pid, name in _descendants().items():
        if not name.startswith("ray::"):
            cpu = _proc_cpu_s(pid)
            if cpu is not None:
                out[pid] = cpu
    return out


def one_run(engine: str, workers: int, clips: list[Path], method: str | None, pin: bool = False,
            unpinned: bool = False, fast: bool = False) -> dict:
    """One fresh run_batch. pin (local engine): this process and so its pool confined to one
    CPU for the run (a reference: one worker that cannot use a second core). unpinned: the
    workers do not claim a core each (``batch --no-pin``, the behaviour before claim_core).
    fast: ``batch --fast``."""
    load0 = os.getloadavg()[0]
    d0 = daemons_cpu_s() if engine == "ray" else {}
    cpus = os.sched_getaffinity(0)
    if pin:
        os.sched_setaffinity(0, {min(cpus)})
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "r.jsonl"
            c0, t0 = time.process_time(), time.perf_counter()
            summary = run_batch([str(c) for c in clips], out, engine=engine, workers=workers, method=method,
                                pin=not unpinned, fast=fast)
            wall, driver = time.perf_counter() - t0, time.process_time() - c0
            rows = read_results(out)
    finally:
        os.sched_setaffinity(0, cpus)
    d1 = daemons_cpu_s() if engine == "ray" else {}
    video = sum(float(r.get("duration_s") or 0) for r in rows)
    cpu = sum(float((r.get("timings_s") or {}).get("cpu") or 0) for r in rows)
    return {"engine": engine, "workers": workers, "pinned": pin, "unpinned": unpinned, "fast": fast,
            "inputs": len(rows),
            "failed": summary.failed,
            "video_s": round(video, 2), "wall_s": round(wall, 2), "worker_cpu_s": round(cpu, 2),
            "driver_cpu_s": round(driver, 2),
            "ray_daemons_cpu_s": round(sum(d1[p] - d0[p] for p in d1 if p in d0), 2) if d1 else None,
            "video_min_per_wall_min": round(video / wall, 3), "video_min_per_cpu_min": round(video / cpu, 3),
            "load_before": round(load0, 2), "load_after": round(os.getloadavg()[0], 2),
            "per_input": [[Path(r["path"]).name, float(r.get("duration_s") or 0),
                           float((r.get("timings_s") or {}).get("cpu") or 0)] for r in rows]}


STARTUP = ("import time, sys; sys.path.insert(0, sys.argv[1]); t0 = time.perf_counter()\n"
           "from avsync.batch.worker import WorkerConfig, init_worker\n"
           "init_worker(WorkerConfig(sys.argv[2] or None))\n"
           "print(time.process_time(), time.perf_counter() - t0)")


def worker_startup(method: str | None) -> tuple[float, float]:
    """(CPU s, wall s) for a fresh worker process to import avsync and build the model."""
    out = subprocess.run([sys.executable, "-c", STARTUP, str(ROOT / "src"), method or ""], check=True,
                         capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    cpu, wall = map(float, out.stdout.split()[-2:])
    return round(cpu, 2), round(wall, 2)


def projected_speedup(per_input: list[tuple[float, float]], startup_cpu_s: float, workers: int) -> float:
    """Idle-machine wall(1 worker) / wall(n workers) from measured CPU, for (duration s, CPU s)
    inputs: every worker pays the start-up, inputs go longest (duration) first to whichever
    worker is free first, as the batch does; one worker is taken to keep exactly one core busy."""
    def wall(n: int) -> float:
        free = [startup_cpu_s] * n
        for _, cpu in sorted(per_input, key=lambda dc: -dc[0]):
            i = free.index(min(free))
            free[i] += cpu
        return max(free)

    return round(wall(1) / wall(workers), 3)


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def config_name(r: dict) -> str:
    """local-2, local-1p (driver pinned to one CPU), ray-2u (--no-pin), local-2f (--fast), ..."""
    return (f"{r['engine']}-{r['workers']}{'p' if r['pinned'] else ''}{'u' if r.get('unpinned') else ''}"
            f"{'f' if r.get('fast') else ''}")


def summarise(name: str, runs: list[dict], startup_cpu_s: float) -> dict:
    """Medians per configuration; 2-vs-1 speed-ups (wall ratio) and Ray's wall overhead."""
    med: dict[str, dict] = {}
    for r in runs:
        med.setdefault(config_name(r), []).append(r)
    med = {k: {"wall_s": statistics.median(r["wall_s"] for r in v),
               "video_min_per_wall_min": statistics.median(r["video_min_per_wall_min"] for r in v),
               "video_min_per_cpu_min": statistics.median(r["video_min_per_cpu_min"] for r in v)}
           for k, v in med.items()}
    wall = {k: v["wall_s"] for k, v in med.items()}
    per_input = [(d, cpu) for _, d, cpu in runs[-1]["per_input"]]
    return {"batch": name, "median": med,
            "speedup_2v1_local": _ratio(wall.get("local-1"), wall.get("local-2")),
            "speedup_2v1_ray": _ratio(wall.get("ray-1"), wall.get("ray-2")),
            "ray_overhead_1w": _ratio(wall.get("ray-1"), wall.get("local-1")),
            "ray_overhead_2w": _ratio(wall.get("ray-2"), wall.get("local-2")),
            "speedup_2v1_pinned_local": _ratio(wall.get("local-1p"), wall.get("local-2")),
            "speedup_2v1_local_unpinned": _ratio(wall.get("local-1u"), wall.get("local-2u")),
            "speedup_2v1_ray_unpinned": _ratio(wall.get("ray-1u"), wall.get("ray-2u")),
            "speedup_fast_local_2": _ratio(wall.get("local-2"), wall.get("local-2f")),
            "projected_idle_speedup_2v1": projected_speedup(per_input, startup_cpu_s, 2)}


ROW_HEAD = ("| batch | engine | workers | inputs | video s | wall s | worker CPU s | driver CPU s | "
            "Ray daemons CPU s | video-min/wall-min | video-min/CPU-min | cores used | load before/after |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def row_md(batch: str, r: dict, startup_cpu_s: float) -> str:
    cores = (r["worker_cpu_s"] + r["workers"] * startup_cpu_s) / r["wall_s"]
    engine = r["engine"] + (" (pinned to 1 CPU)" if r["pinned"] else "") + (
        " (--no-pin)" if r.get("unpinned") else "") + (" --fast" if r.get("fast") else "")
    daemons = "-" if r["ray_daemons_cpu_s"] is None else r["ray_daemons_cpu_s"]
    return (f"| {batch} | {engine} | {r['workers']} | {r['inputs']} | {r['video_s']} | {r['wall_s']} | "
            f"{r['worker_cpu_s']} | {r['driver_cpu_s']} | {daemons} | {r['video_min_per_wall_min']} | "
            f"{r['video_min_per_cpu_min']} | {cores:.2f} | {r['load_before']}/{r['load_after']} |")


def summary_md(summaries: list[dict]) -> str:
    def f(x: float | None, unit: str = "") -> str:
        return "-" if x is None else f"{x:.2f}{unit}"

    lines = ["| batch | 2 vs 1 local | 2 vs 1 Ray | Ray / local wall, 1 worker | Ray / local wall, 2 workers "
             "| projected 2 vs 1 (idle, from CPU) | 2 local vs 1 pinned to a core "
             "| 2 vs 1 local, --no-pin | 2 vs 1 Ray, --no-pin | --fast vs default, 2 local |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        lines.append(f"| {s['batch']} | {f(s['speedup_2v1_local'], 'x')} | {f(s['speedup_2v1_ray'], 'x')} | "
                     f"{f(s['ray_overhead_1w'])} | {f(s['ray_overhead_2w'])} | "
                     f"{f(s['projected_idle_speedup_2v1'], 'x')} | {f(s['speedup_2v1_pinned_local'], 'x')} | "
                     f"{f(s.get('speedup_2v1_local_unpinned'), 'x')} | "
                     f"{f(s.get('speedup_2v1_ray_unpinned'), 'x')} | "
                     f"{f(s.get('speedup_fast_local_2'), 'x')} |")
    return "\n".join(lines)


def parse_batches(text: str) -> list[tuple[str, int, float]]:
    out = []
    for part in text.split(","):
        name, spec = part.split("=")
        n, k = spec.split("x")
        out.append((name, int(n), float(k)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=Path, default=ROOT.parent / "shared" / "data" / "realclips")
    ap.add_argument("--batches", default="short=20x10,long=36x20",
                    help="NAME=NxK,...: N real clips of at most K s each")
    ap.add_argument("--configs", default="local-1,local-2,ray-1,ray-2",
                    help="ENGINE-WORKERS,...; local-1p: one local worker confined to one CPU; "
                         "SUFFIX u (local-2u, ray-2u): workers not pinned to cores (--no-pin)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--method", default=None, help="default: the default method")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--md", type=Path, default=None, help="markdown tables to paste into BENCHMARKS.md")
    args = ap.parse_args()
    command = "OMP_NUM_THREADS=1 python benchmarks/batch_throughput.py " + shlex.join(sys.argv[1:])
    print(f"command: {command}\nstart: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, {uptime()}",
          flush=True)
    configs = []  # (engine, workers, pin, unpinned, fast): suffixes p, u, f (any order)
    for c in args.configs.split(","):
        engine, rest = c.split("-")
        n = rest.rstrip("puf")
        configs.append((engine, int(n), "p" in rest[len(n):], "u" in rest[len(n):], "f" in rest[len(n):]))
    if any(pin and engine != "local" for engine, _, pin, _, _ in configs):
        ap.error("only local configurations can be pinned (local-1p)")
    batches = [(name, pick_clips(args.clips, n, k)) for name, n, k in parse_batches(args.batches)]
    from avsync.models.registry import DEFAULT_METHOD  # imported now, not inside the first run

    ray_init_s = None
    if any(e == "ray" for e, *_ in configs):
        import ray

        t0 = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                 configure_logging=False,
                 runtime_env={"env_vars": {"PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}})
        ray_init_s = round(time.perf_counter() - t0, 2)
    startup = worker_startup(args.method)
    print(f"method {args.method or DEFAULT_METHOD}; ray.init {ray_init_s} s; worker start-up "
          f"{startup[0]} CPU-s ({startup[1]} s wall)\n\n{ROW_HEAD}", flush=True)
    runs, rows_md, summaries = [], [], []
    for name, clips in batches:
        batch_runs = []
        for rep in range(args.repeats):
            for engine, workers, pin, unpinned, fast in configs:
                r = one_run(engine, workers, clips, args.method, pin, unpinned, fast)
                r.update(batch=name, repeat=rep)
                batch_runs.append(r)
                rows_md.append(row_md(f"{name} ({len(clips)} clips)", r, startup[0]))
                print(rows_md[-1], flush=True)
        runs += batch_runs
        summaries.append(summarise(name, batch_runs, startup[0]))
    end = f"end: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, {uptime()}"
    table = summary_md(summaries)
    print(f"\n{table}\n\n{end}", flush=True)
    md = (f"`{command}` (method `{args.method or DEFAULT_METHOD}`, ray.init {ray_init_s} s, worker start-up "
          f"{startup[0]} CPU-s)\n\n{ROW_HEAD}\n" + "\n".join(rows_md) + f"\n\n{table}\n\n"
          f"{end.replace('end', 'Finished')}\n")
    if args.md is not None:
        args.md.write_text(md, encoding="utf-8")
    if args.json is not None:
        args.json.write_text(json.dumps({"command": command, "method": args.method or DEFAULT_METHOD,
                                         "clips": {n: [str(c) for c in cl] for n, cl in batches},
                                         "ray_init_s": ray_init_s, "worker_startup_cpu_wall_s": startup,
                                         "runs": runs, "summaries": summaries, "end": end}, indent=1))


if __name__ == "__main__":
    main()
