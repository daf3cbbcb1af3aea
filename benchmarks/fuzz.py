"""Mutation fuzzing of ``avsync detect`` / ``fix``: counts of outcomes per container and mutator.

    PYTHONPATH=src python benchmarks/fuzz.py --seeds 12 --report docs/fuzz_table.md

Seed files: the first 1.2 s of examples/grid_bbaf2n.mp4 (and, with --realclip, of one real clip)
transcoded into mp4, mkv, avi, mpg, mov and webm (ffmpeg; PyAV without webm when ffmpeg is
absent). Each (seed file, mutator, seed) gives one hostile file, run by the CLI in its own
process with a time limit (see avsync.evaluation.fuzz_run). The command mix per file index:
i % 6 == 0: ``fix --offset-ms 40``; i % 6 == 1: ``detect --json`` with the default method;
otherwise ``detect --json --method avcorr``. Every ``--exec-every``-th file runs in a fresh
interpreter (``python -m avsync.cli``), the rest in forked children of a pre-imported parent.
Prints each failure as it happens and a markdown table at the end (also to --report).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from pathlib import Path

from avsync.evaluation.fuzz import MUTATORS, make_seeds, mutate_file
from avsync.evaluation.fuzz_run import CPU_LIMIT_S, FAILURES, OUTCOMES, Case, Outcome, run_cases

ROOT = Path(__file__).resolve().parents[1]


def build_cases(seeds: dict[str, Path], n_seeds: int, folder: Path) -> list[Case]:
    """One case per (seed file, mutator, seed index); the command depends on the index."""
    cases = []
    i = 0
    for kind, seed_file in seeds.items():
        for mutator in MUTATORS:
            for s in range(n_seeds):
                path = mutate_file(seed_file, mutator, s, folder / f"{seed_file.stem}-{mutator}-{s}.{kind}")
                if i % 6 == 0:
                    out = folder / "out" / f"{path.stem}-{kind}.{'mkv' if kind == 'webm' else kind}"
                    argv = ["fix", str(path), "-o", str(out), "--offset-ms", "40"]
                else:
                    out = None
                    method = [] if i % 6 == 1 else ["--method", "avcorr"]
                    argv = ["detect", "--json", "--no-progress", *method, str(path)]
                cases.append(Case(argv, kind, mutator, s, out, {"clip": seed_file.stem}))
                i += 1
    return cases


def table(outcomes: list[Outcome], key: str) -> str:
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for o in outcomes:
        counts[getattr(o.case, key)][o.kind] += 1
    lines = [f"| {key} | files | " + " | ".join(OUTCOMES) + " |", "|---|---:|" + "---:|" * len(OUTCOMES)]
    for name in sorted(counts):
        c = counts[name]
        lines.append(f"| {name} | {sum(c.values())} | " + " | ".join(str(c[k]) for k in OUTCOMES) + " |")
    total = collections.Counter(o.kind for o in outcomes)
    lines.append(f"| **all** | {len(outcomes)} | " + " | ".join(str(total[k]) for k in OUTCOMES) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=12, help="mutations per (container, mutator)")
    ap.add_argument("--clip", type=Path, default=ROOT / "examples" / "grid_bbaf2n.mp4")
    ap.add_argument("--realclip", type=Path, default=None, help="a second source clip")
    ap.add_argument("--duration-s", type=float, default=1.2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout-s", type=float, default=600.0, help="wall-clock limit (CPU: 60 s)")
    ap.add_argument("--exec-every", type=int, default=8, help="every N-th file in a fresh interpreter")
    ap.add_argument("--report", type=Path, default=None)
    ap.add_argument("--log", type=Path, default=None, help="append one JSON line per file as it ends")
    args = ap.parse_args()

    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="avsync-fuzz-") as tmp:
        folder = Path(tmp)
        (folder / "out").mkdir()
        seeds = make_seeds(args.clip, folder / "seeds", args.duration_s)
        extra = {} if args.realclip is None else make_seeds(args.realclip, folder / "seeds2", args.duration_s)
        cases = build_cases(seeds, args.seeds, folder)
        if extra:
            cases += build_cases(extra, max(1, args.seeds // 3), folder)
        exec_cases = [c for i, c in enumerate(cases) if i % args.exec_every == args.exec_every - 1]
        fork_cases = [c for i, c in enumerate(cases) if i % args.exec_every != args.exec_every - 1]
        print(f"{len(cases)} mutated files from {sorted(seeds)} ({len(exec_cases)} exec, "
              f"{len(fork_cases)} fork)", flush=True)

        def report(o: Outcome) -> None:
            if args.log is not None:
                with args.log.open("a") as f:
                    f.write(json.dumps({"container": o.case.container, "mutator": o.case.mutator,
                                        "seed": o.case.seed, "argv": o.case.argv, "kind": o.kind, "rc": o.rc,
                                        "cpu_s": round(o.cpu_s, 2), "detail": o.detail}) + "\n")
            if o.kind in FAILURES:
                print(f"{o.kind}: {' '.join(o.case.argv)} -> {o.detail}", flush=True)

        outcomes = run_cases(fork_cases, mode="fork", workers=args.workers, timeout_s=args.timeout_s,
                             on_done=report)
        outcomes += run_cases(exec_cases, mode="exec", workers=args.workers, timeout_s=args.timeout_s,
                              on_done=report)
    wall = time.time() - t0
    slow = max(outcomes, key=lambda o: o.cpu_s)
    cpu = sorted(o.cpu_s for o in outcomes)
    cmds = collections.Counter(o.case.argv[0] + (" default" if o.case.argv[0] == "detect" and "avcorr"
                                                  not in o.case.argv else "") for o in outcomes)
    text = "\n\n".join([
        table(outcomes, "container"), table(outcomes, "mutator"),
        f"{len(outcomes)} files in {wall / 60:.1f} min wall; commands {dict(cmds)}; CPU per file: median "
        f"{cpu[len(cpu) // 2]:.1f} s, max {slow.cpu_s:.1f} s ({slow.case.container}/{slow.case.mutator}); "
        f"limits {CPU_LIMIT_S} s CPU, {args.timeout_s:g} s wall.",
    ])
    print(text)
    if args.report is not None:
        args.report.write_text(text + "\n")
    return 1 if any(o.kind in FAILURES for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
