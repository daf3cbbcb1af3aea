"""Do two versions of the code give the same answers? ``detect`` (default method) on real clips.

    python benchmarks/same_answers.py --reference-src /tmp/ref/src [--clips ../shared/data/realclips] [--n 16]
        [--method NAME (default: the package's default)] [--fresh]

``--reference-src``: a ``src`` folder of the code to compare with (``git archive <commit> src |
tar -x -C /tmp/ref``). ``--n`` clips of kind ``real`` of the MANIFEST, spread evenly over it in
path order; each version scores them all in one fresh process (``--fresh``: each clip in a
process of its own, so every ``detect`` is a process's first, as from the CLI: the default's
face analysis then runs in a forked child, avsync.forked). Prints offset and confidence of
each clip under both and flags any difference (offset, or confidence by 0.001 or more); exits 1
when there is one. The speed issue's condition "identical offsets (and confidences within 0.1)".
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

HERE_SRC = Path(__file__).resolve().parents[1] / "src"

CHILD = r"""
import json, sys
from avsync.inference import DEFAULT_METHOD, detect
method = sys.argv[1] or DEFAULT_METHOD
for p in sys.argv[2:]:
    try:
        r = detect(p, method=method)
        print(json.dumps([p, r.offset_frames, r.confidence]))
    except Exception as exc:  # a clip either version cannot score: compared as text
        print(json.dumps([p, str(exc)[:80], None]))
"""


def answers(src: Path, paths: list[str], method: str = "") -> list[list]:
    env = dict(os.environ, PYTHONPATH=str(src))
    out = subprocess.run([sys.executable, "-c", CHILD, method, *paths], env=env, capture_output=True,
                         text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{src}: {out.stderr[-2000:]}")
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("[")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reference-src", type=Path, required=True)
    ap.add_argument("--clips", type=Path, default=Path("../shared/data/realclips"))
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--method", default="", help="a method name (default: the package's default)")
    ap.add_argument("--fresh", action="store_true", help="one process per clip")
    args = ap.parse_args()
    with open(args.clips / "MANIFEST.tsv", newline="", encoding="utf-8") as fh:
        rows = sorted((r for r in csv.DictReader(fh, delimiter="\t") if r["kind"] == "real"),
                      key=lambda r: r["path"])
    picked = rows[::max(1, len(rows) // args.n)][:args.n]
    paths = [str(args.clips / r["path"]) for r in picked]
    groups = [[p] for p in paths] if args.fresh else [paths]
    before = [a for g in groups for a in answers(args.reference_src, g, args.method)]
    after = [a for g in groups for a in answers(HERE_SRC, g, args.method)]
    print("| clip | reference: offset / confidence | this checkout | same |\n|---|---|---|---|")
    differ = 0
    for a, b in zip(before, after, strict=True):
        same = a[1] == b[1] and (a[2] is None or abs(a[2] - b[2]) < 1e-3)
        differ += not same
        print(f"| {Path(a[0]).name} | {a[1]} / {a[2]} | {b[1]} / {b[2]} | {'yes' if same else '**no**'} |")
    print(f"\n{len(before) - differ} of {len(before)} the same")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
