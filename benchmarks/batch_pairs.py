"""2-vs-1-worker ratios, pair by pair, over several ``batch_throughput.py --json`` files (issue 13).

    python benchmarks/batch_pairs.py RUN1.json [RUN2.json ...] [--batch all]

This machine drifts by 10-30 % over minutes, so one pair says little. Each repeat of
``batch_throughput.py`` runs the configurations back to back; a *pair* is one engine's 1-worker
run and its 2-worker run of the same repeat (a few minutes apart). Printed: every pair's wall
ratio and per-input CPU inflation (2-worker worker CPU / 1-worker worker CPU), then per engine
the median, the range and the share of pairs at or above 1.8x.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

TARGET: float = 1.8


def pairs(files: list[Path], batch: str) -> dict[str, list[dict]]:
    """{engine: [{"file", "repeat", "ratio", "cpu_inflation", "wall_1", "wall_2"}]} (pinned runs only)."""
    out: dict[str, list[dict]] = {}
    for f in files:
        runs = [r for r in json.loads(f.read_text())["runs"] if r["batch"] == batch and not r.get("unpinned")]
        for engine in sorted({r["engine"] for r in runs}):
            for rep in sorted({r["repeat"] for r in runs}):
                one = [r for r in runs if r["engine"] == engine and r["repeat"] == rep and r["workers"] == 1]
                two = [r for r in runs if r["engine"] == engine and r["repeat"] == rep and r["workers"] == 2]
                if one and two:
                    a, b = one[0], two[0]
                    out.setdefault(engine, []).append({
                        "file": f.name, "repeat": rep, "wall_1": a["wall_s"], "wall_2": b["wall_s"],
                        "ratio": a["wall_s"] / b["wall_s"],
                        "cpu_inflation": b["worker_cpu_s"] / a["worker_cpu_s"]})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--batch", default="all")
    args = ap.parse_args(argv)
    found = pairs(args.files, args.batch)
    print("| engine | run | 1 worker wall s | 2 workers wall s | 2 vs 1 | CPU per input, 2 vs 1 |")
    print("|---|---|---|---|---|---|")
    for engine, ps in found.items():
        for p in ps:
            print(f"| {engine} | {p['file']} #{p['repeat'] + 1} | {p['wall_1']:.1f} | {p['wall_2']:.1f} | "
                  f"{p['ratio']:.2f}x | {p['cpu_inflation']:.2f} |")
    print()
    print(f"| engine | pairs | median 2 vs 1 | range | pairs >= {TARGET}x | median CPU inflation |")
    print("|---|---|---|---|---|---|")
    for engine, ps in found.items():
        r = [p["ratio"] for p in ps]
        print(f"| {engine} | {len(ps)} | {statistics.median(r):.2f}x | {min(r):.2f}-{max(r):.2f}x | "
              f"{sum(x >= TARGET for x in r)} of {len(r)} | "
              f"{statistics.median(p['cpu_inflation'] for p in ps):.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
