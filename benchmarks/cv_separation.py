"""How well a variant's confidence separates own audio from foreign audio, threshold-free.

    python benchmarks/cv_separation.py [--out /work/cache/cv] [--variants base,mesh] [--method stacked]

From the stored cross-validation curves (benchmarks/cv.py): for each whole held-out clip, the
method's confidence on its own audio (at the true offset 0) and on a foreign audio (as
``cv_report.cases`` computes them, stacked weights fitted on the other folds). Prints, per
variant: the AUC of own vs foreign (the chance that an own-audio confidence beats a foreign
one), the share of own / foreign confidences >= each threshold, and paired differences of the
AUC against the first variant with a 95 % bootstrap interval over speaker groups. A front end
that only moves every confidence down keeps its AUC; one that blurs the evidence loses it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cv import catalogue  # noqa: E402
from cv_report import STACKED, confidence, fit_stacking, load_units, method_curve, whole_reading  # noqa: E402


def confidences(out: Path, variant: str, k: int, method: str) -> dict[str, tuple[float, float]]:
    """clip -> (own-audio confidence, foreign-audio confidence) over the whole held-out clips."""
    units = load_units(out, variant, k)
    weights = {f: fit_stacking(units, f, STACKED[method]) for f in range(k)} if method in STACKED else {}
    res = {}
    for f, uc in units:
        if uc.label != "whole" or not uc.foreign:
            continue
        w = weights.get(f)
        _, own = whole_reading(uc, method, 0, w)
        fw = dict(uc.foreign)
        n = len(next(iter(uc.foreign_nulls.values())))
        nulls = [method_curve({m: uc.foreign_nulls[m][i] for m in fw}, method, w) for i in range(n)]
        res[uc.clip] = (own, confidence(method_curve(fw, method, w), nulls))
    return res


def auc(own: np.ndarray, foreign: np.ndarray) -> float:
    """P(own > foreign) + P(tie) / 2."""
    d = own[:, None] - foreign[None, :]
    return float(np.mean(d > 0) + 0.5 * np.mean(d == 0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("/work/cache/cv"))
    ap.add_argument("--cache", type=Path, default=Path("/work/cache/train"), help="as cv.py's")
    ap.add_argument("--variants", default="base,mesh")
    ap.add_argument("--method", default="stacked")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--boot", type=int, default=2000)
    args = ap.parse_args()
    variants = args.variants.split(",")
    conf = {v: confidences(args.out, v, args.k, args.method) for v in variants}
    clips = sorted(set.intersection(*(set(c) for c in conf.values())))
    clips = [c for c in clips if all(np.isfinite(conf[v][c]).all() for v in variants)]
    group_of = {c.rel: c.group for c in catalogue(args.cache)}
    groups = np.array([next(g for rel, g in group_of.items() if c.endswith(rel)) for c in clips])
    thresholds = (2.0, 2.5, 3.0, 3.5, 4.0)
    print(f"method `{args.method}`, {len(clips)} whole clips with own and foreign confidences\n")
    print("| variant | AUC own vs foreign | median own | median foreign | "
          + " | ".join(f"own / foreign >= {t:g} %" for t in thresholds) + " |")
    print("|---|---|---|---|" + "---|" * len(thresholds))
    arr = {v: np.array([conf[v][c] for c in clips]) for v in variants}
    for v in variants:
        own, fo = arr[v][:, 0], arr[v][:, 1]
        cells = [f"{100 * np.mean(own >= t):.1f} / {100 * np.mean(fo >= t):.1f}" for t in thresholds]
        print(f"| {v} | {auc(own, fo):.3f} | {np.median(own):.2f} | {np.median(fo):.2f} | "
              + " | ".join(cells) + " |")
    rng = np.random.default_rng(0)
    uniq = np.unique(groups)
    for v in variants[1:]:
        diffs = []
        for _ in range(args.boot):
            pick = np.concatenate([np.flatnonzero(groups == g) for g in rng.choice(uniq, len(uniq))])
            a, b = arr[v][pick], arr[variants[0]][pick]
            diffs.append(auc(a[:, 0], a[:, 1]) - auc(b[:, 0], b[:, 1]))
        est = auc(arr[v][:, 0], arr[v][:, 1]) - auc(arr[variants[0]][:, 0], arr[variants[0]][:, 1])
        lo, hi = np.percentile(diffs, [2.5, 97.5])
        print(f"\nAUC {v} - {variants[0]}: {est:+.3f} [{lo:+.3f}, {hi:+.3f}] (95 % bootstrap over "
              f"{len(uniq)} speaker groups)")


if __name__ == "__main__":
    main()
