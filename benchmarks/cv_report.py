"""Metrics and table of the speaker cross-validation (``benchmarks/cv.py --phase report``).

Every method is computed from the stored member curves of the held-out units
(benchmarks/cv_curves.py): single methods as ``inference.curve`` averages their segment curves,
fusions as ``models.fusion.fuse_curves`` of the standardised member curves per segment (exactly
what ``FusedMethod`` scores). ``stacked`` is a fusion of avcorr, landmark and c3 whose weights are
fitted, for each held-out fold, on the out-of-fold curves of the OTHER folds' clips (grid search
over ``crossval.weight_grid``; objective: mean +-1 accuracy of whole units and 5/15/25-frame
windows). Intervals: 95 % bootstrap over speaker groups (``crossval.cluster_bootstrap``).
"""

from __future__ import annotations

import pickle
from collections import defaultdict
from pathlib import Path

import numpy as np
from cv_curves import CONTEXTS, GRID, SHIFTS

from avsync.evaluation.crossval import cluster_bootstrap, duration_bucket, fit_weights, weight_grid
from avsync.inference import CONFIDENCE_THRESHOLD, peak_frames
from avsync.models.fusion import standardise

MEMBERS: tuple[str, ...] = ("avcorr", "landmark", "c3", "landmark_all", "c3_all")
METHODS: dict[str, tuple[float, ...] | None] = {
    "avcorr": None, "landmark": None, "c3": None,
    "fused": (1.0, 1.0, 0.0, 0.0, 0.0), "fused_c3": (1.0, 1.0, 1.0, 0.0, 0.0),
    "landmark_c3": (0.0, 1.0, 1.0, 0.0, 0.0),
    "landmark_all": None, "c3_all": None, "landmark_c3_all": (0.0, 0.0, 0.0, 1.0, 1.0),
    "stacked": None, "stacked_all": None,
}
"""Method -> fusion weights over MEMBERS (None: a single member, or fitted when stacked)."""
STACKED: dict[str, tuple[int, ...]] = {"stacked": (0, 1, 2), "stacked_all": (0, 3, 4)}
"""Stacked method -> the MEMBERS indices whose weights are fitted (the others get 0)."""
BUCKETS: tuple[str, ...] = ("<2", "2-4", "4-8", ">=8")


def _z(curve: np.ndarray) -> np.ndarray:
    z = standardise(curve)
    return np.zeros_like(z) if not np.isfinite(z).any() else z


def zbar(parts: dict[str, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """(M, K) length-weighted mean over segments of each member's standardised curve (zeros for
    a member without a curve): a fusion's whole-unit curve is ``weights @ zbar``."""
    out = np.zeros((len(MEMBERS), len(GRID)))
    for i, m in enumerate(MEMBERS):
        if m in parts:
            lens, cur = parts[m]
            out[i] = sum(n * _z(c) for n, c in zip(lens, cur, strict=True)) / lens.sum()
    return out


def method_curve(parts: dict[str, tuple[np.ndarray, np.ndarray]], method: str,
                 weights: tuple[float, ...] | None) -> np.ndarray:
    """(K,) whole-unit curve of ``method`` from the members' segment curves."""
    if weights is None:
        if method not in parts:
            return np.full(len(GRID), np.nan)
        lens, cur = parts[method]
        return (lens[:, None] * cur).sum(0) / lens.sum()
    return np.asarray(weights) @ zbar(parts)


def _argmax(c: np.ndarray) -> int:
    return int(np.nanargmax(c)) if np.isfinite(c).any() else 0


def confidence(curve: np.ndarray, nulls: list[np.ndarray]) -> float:
    """inference.score_input's confidence from a curve and its null-roll curves."""
    peaks = np.array([np.nanmax(n) if np.isfinite(n).any() else np.nan for n in nulls])
    if not len(peaks) or not np.isfinite(curve).any() or not np.isfinite(peaks).all():
        return float("nan")
    spread = max(float(peaks.std()), 1e-3 * max(abs(float(peaks.mean())), 1e-6))
    return float((np.nanmax(curve) - peaks.mean()) / spread)


def _parts_at(uc, k: int) -> dict:
    return {m: uc.whole[m][k] for m in MEMBERS if k in uc.whole.get(m, {})}


def whole_reading(uc, method: str, k: int, weights: tuple[float, ...] | None = None) -> tuple[float, float]:
    """(sub-frame peak, confidence at k = 0 else NaN) of ``method`` on unit ``uc`` at shift k."""
    w = METHODS[method] if weights is None else weights
    cur = method_curve(_parts_at(uc, k), method, w)
    conf = float("nan")
    if k == 0:
        nulls = [method_curve({m: uc.nulls[m][r] for m in MEMBERS if m in uc.nulls}, method, w)
                 for r in range(len(next(iter(uc.nulls.values()), [])))]
        conf = confidence(cur, nulls)
    return peak_frames(GRID, cur), conf


def window_z(uc, ctx: int, k: int) -> np.ndarray:
    """(W, M, K) standardised member curves of the unit's windows (zeros where a member has none)."""
    n = max((len(uc.windows[m].get(ctx, {}).get(k, [])) for m in MEMBERS if m in uc.windows), default=0)
    out = np.zeros((n, len(MEMBERS), len(GRID)))
    for i, m in enumerate(MEMBERS):
        for j, c in enumerate(uc.windows.get(m, {}).get(ctx, {}).get(k, [])):
            out[j, i] = _z(c)
    return out


def load_units(out: Path, variant: str, k: int) -> list[tuple[int, object]]:
    units = []
    for f in range(k):
        path = out / variant / f"fold{f}" / "curves.pkl"
        if not path.is_file():
            print(f"warning: {path} missing: fold {f} left out of the table", flush=True)
            continue
        with open(path, "rb") as fh:
            units += [(f, u) for u in pickle.load(fh)["units"]]
    return units


def fit_stacking(units: list[tuple[int, object]], fold: int, idx: tuple[int, ...]) -> tuple[float, ...]:
    """Fusion weights fitted on the units NOT in ``fold`` (argmax predictions, see module doc)."""
    whole_z, whole_k = [], []
    win: dict[int, tuple[list, list]] = {c: ([], []) for c in CONTEXTS}
    for f, uc in units:
        if f == fold:
            continue
        for k in SHIFTS:
            whole_z.append(zbar(_parts_at(uc, k)))
            whole_k.append(k)
            if uc.label == "whole":
                for c in CONTEXTS:
                    z = window_z(uc, c, k)
                    win[c][0].append(z)
                    win[c][1].extend([k] * len(z))
    if not whole_z:  # no other fold available (partial run): equal weights
        out = np.zeros(len(MEMBERS))
        out[list(idx)] = 1.0
        return tuple(out)
    wz, wk = np.stack(whole_z), np.array(whole_k)
    wins = {c: (np.concatenate(v[0]), np.array(v[1])) for c, v in win.items() if v[1]}

    def full(w: tuple[float, ...]) -> np.ndarray:
        wv = np.zeros(len(MEMBERS))
        wv[list(idx)] = w
        return wv

    def objective(w: tuple[float, ...]) -> float:
        wv = full(w)
        accs = [np.mean(np.abs(GRID[np.argmax(np.einsum("m,nmk->nk", wv, wz), 1)] - wk) <= 1)]
        for z, kk in wins.values():
            accs.append(np.mean(np.abs(GRID[np.argmax(np.einsum("m,nmk->nk", wv, z), 1)] - kk) <= 1))
        return float(np.mean(accs))

    return tuple(full(fit_weights(weight_grid(len(idx)), objective)[0]))


def cases(units: list[tuple[int, object]], established: dict[str, bool], group_of: dict[str, str],
          k_folds: int) -> dict[str, dict[str, list]]:
    """method -> metric name -> [(value, group)] over the held-out cases."""
    stack_w = {(s, f): fit_stacking(units, f, idx) for s, idx in STACKED.items() for f in range(k_folds)}
    res: dict[str, dict[str, list]] = {m: defaultdict(list) for m in METHODS}
    for f, uc in units:
        g, est = group_of[uc.clip], established[uc.clip]
        b = duration_bucket(uc.duration_s)
        for method, w0 in METHODS.items():
            w = stack_w[(method, f)] if method in STACKED else w0
            r = res[method]
            preds = {}
            for k in SHIFTS:
                peak, conf = whole_reading(uc, method, k, w if method in STACKED else None)
                preds[k] = int(round(peak))
                r[f"acc_{b}"].append((abs(preds[k] - k) <= 1, g))
                if uc.label == "whole":
                    r["acc_whole"].append((abs(preds[k] - k) <= 1, g))
                    if est:
                        r["acc_established"].append((abs(preds[k] - k) <= 1, g))
                if k == 0:
                    if np.isfinite(conf):
                        r[f"rel_{b}"].append((conf >= CONFIDENCE_THRESHOLD, g))
                        if conf >= CONFIDENCE_THRESHOLD:
                            r[f"relok_{b}"].append((abs(preds[k]) <= 1, g))
                    if uc.label == "whole" and est:
                        r["bias"].append((peak, g))
                    if uc.label == "whole" and np.isfinite(conf):
                        r["reliable_matched"].append((conf >= CONFIDENCE_THRESHOLD, g))
            for k in SHIFTS:
                if k:
                    r[f"cons_{b}"].append((abs(preds[k] - preds[0] - k) <= 1, g))
            if uc.label != "whole":
                continue
            wv = np.asarray(w) if w is not None else None
            for c in CONTEXTS:
                for k in SHIFTS:
                    if wv is None:
                        cur = uc.windows.get(method, {}).get(c, {}).get(k, [])
                        picks = [_argmax(x) for x in cur]
                    else:
                        picks = [_argmax(x) for x in np.einsum("m,nmk->nk", wv, window_z(uc, c, k))]
                    r[f"win_{c}"] += [(abs(GRID[p] - k) <= 1, g) for p in picks]
            if uc.foreign:
                fw = {m: uc.foreign[m] for m in MEMBERS if m in uc.foreign}
                cur = method_curve(fw, method, w)
                nulls = [method_curve({m: uc.foreign_nulls[m][i] for m in fw}, method, w)
                         for i in range(len(next(iter(uc.foreign_nulls.values()))))]
                conf = confidence(cur, nulls)
                if np.isfinite(conf):
                    r["reliable_foreign"].append((conf >= CONFIDENCE_THRESHOLD, g))
    for method in res:
        res[method]["weights"] = [stack_w[(method, f)] for f in range(k_folds)] if method in STACKED else []
    return res


def cell(pairs: list, stat=np.mean, pct: bool = True, fmt: str = "{:.1f}") -> str:
    if not pairs:
        return "n/a"
    v, g = zip(*pairs, strict=True)
    est, lo, hi = cluster_bootstrap(np.asarray(v, np.float64), list(g), stat=stat)
    s = 100.0 if pct else 1.0
    return f"{fmt.format(est * s)} [{fmt.format(lo * s)}, {fmt.format(hi * s)}]"


TABLES: tuple[tuple[tuple[str, str], ...], ...] = (
    (*((f"acc_{b}", f"±1 {b} s") for b in BUCKETS), *((f"cons_{b}", f"consistency {b} s") for b in BUCKETS)),
    (("win_5", "±1 @5"), ("win_15", "±1 @15"), ("win_25", "±1 @25"),
     ("acc_established", "±1 GRID/LRS2/LRS3"), ("bias", "median bias (frames)"),
     ("reliable_matched", "reliable, own audio"), ("reliable_foreign", "reliable, foreign audio")),
    (*((f"rel_{b}", f"reliable {b} s") for b in BUCKETS),
     *((f"relok_{b}", f"right when reliable {b} s") for b in BUCKETS)),
)
"""Three tables of (metric key, column title)."""
COLUMNS: tuple[tuple[str, str], ...] = tuple(c for t in TABLES for c in t)


def table(res: dict[str, dict[str, list]], columns: tuple[tuple[str, str], ...] = TABLES[0]) -> str:
    head = "| method | " + " | ".join(c[1] for c in columns) + " |"
    lines = [head, "|---" * (len(columns) + 1) + "|"]
    for m, r in res.items():
        cells = [cell(r[key], stat=np.median, pct=False, fmt="{:+.2f}") if key == "bias" else cell(r[key])
                 for key, _ in columns]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


DIFF_KEYS: tuple[tuple[str, str], ...] = (
    ("acc_<2", "±1 <2 s"), ("acc_2-4", "±1 2-4 s"), ("cons_<2", "consistency <2 s"),
    ("cons_2-4", "consistency 2-4 s"), ("cons_4-8", "consistency 4-8 s"), ("cons_>=8", "consistency >=8 s"),
    ("win_15", "±1 @15"), ("acc_established", "±1 GRID/LRS2/LRS3"), ("reliable_matched", "reliable, own"),
    ("reliable_foreign", "reliable, foreign"),
)


def diff_table(res: dict[str, dict[str, list]], base: str = "landmark_c3") -> str:
    """Paired differences (method - base, points) on the same cases, bootstrap over groups."""
    lines = ["| method - " + base + " | " + " | ".join(t for _, t in DIFF_KEYS) + " |",
             "|---" * (len(DIFF_KEYS) + 1) + "|"]
    for m, r in res.items():
        if m == base:
            continue
        cells = []
        for key, _ in DIFF_KEYS:
            a, b = r[key], res[base][key]
            if not a or len(a) != len(b) or any(ga != gb for (_, ga), (_, gb) in zip(a, b, strict=True)):
                cells.append("n/a")
                continue
            d = np.array([float(x) - float(y) for (x, _), (y, _) in zip(a, b, strict=True)])
            est, lo, hi = cluster_bootstrap(d, [g for _, g in a])
            cells.append(f"{100 * est:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def counts(res: dict[str, dict[str, list]]) -> str:
    r = res["avcorr"]
    parts = [f"{key}: {len(r[key])} cases / {len({g for _, g in r[key]})} groups" for key, _ in COLUMNS]
    return "; ".join(parts)


VARIANT_KEYS: tuple[tuple[str, str], ...] = (
    ("acc_whole", "±1 whole clips"), ("cons_<2", "consistency <2 s"), ("cons_2-4", "consistency 2-4 s"),
    ("cons_4-8", "consistency 4-8 s"), ("cons_>=8", "consistency >=8 s"), ("win_15", "±1 @15"),
    ("acc_established", "±1 GRID/LRS2/LRS3"), ("reliable_matched", "reliable, own"),
    ("reliable_foreign", "reliable, foreign"),
)
"""Columns of the variant comparison; with a --light variant (whole clips only) the columns that
need excerpts, windows or foreign audio read n/a."""


def variant_table(res: dict[str, dict[str, list]], ref: dict[str, dict[str, list]], name: str) -> str:
    """``name`` - base on the same cases (points, paired, bootstrap over groups), plus both
    median biases."""
    lines = [f"| method: {name} − base | " + " | ".join(t for _, t in VARIANT_KEYS)
             + " | median bias base → " + name + " |", "|---" * (len(VARIANT_KEYS) + 2) + "|"]
    for m in res:
        cells = []
        for key, _ in VARIANT_KEYS:
            a, b = res[m][key], ref[m][key]
            if not a or len(a) != len(b):
                cells.append("n/a")
                continue
            d = np.array([float(x) - float(y) for (x, _), (y, _) in zip(a, b, strict=True)])
            est, lo, hi = cluster_bootstrap(d, [g for _, g in a])
            cells.append(f"{100 * est:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]")
        bias = (f"{cell(ref[m]['bias'], np.median, False, '{:+.2f}')} → "
                f"{cell(res[m]['bias'], np.median, False, '{:+.2f}')}")
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {bias} |")
    return "\n".join(lines)


def paired_units(base: list[tuple[int, object]], other: list[tuple[int, object]]
                 ) -> tuple[list[tuple[int, object]], list[tuple[int, object]]]:
    """(other's units, base's units) on the units both have, in one order (clip, label), so that
    ``variant_table`` pairs each case with its own. A unit whose duration bucket differs between
    the two (a front end that tracks a face longer) is left out of both: it would land in other
    columns on each side. Order matters: a variant trained on another cache lists its folds'
    units in another order."""
    def key(fu):
        return fu[1].clip, fu[1].label

    a = {key(fu): fu for fu in base}
    b = {key(fu): fu for fu in other}
    both = sorted(x for x in a.keys() & b.keys()
                  if duration_bucket(a[x][1].duration_s) == duration_bucket(b[x][1].duration_s))
    return [b[x] for x in both], [a[x] for x in both]


def report(out: Path, variants: list[str], clips, fold_of: dict[str, int], k: int) -> str:
    established = {}
    group_of = {}
    for c in clips:
        key = str(Path("/work/shared/data/realclips") / c.rel)
        established[key] = c.established
        group_of[key] = c.group
    # units store the clip's resolved path; map them through the relative path
    text = []
    if len(variants) > 1:  # compare each variant with the first on the units both have
        all_base = load_units(out, variants[0], k)
        est = {u.clip: next(c.established for c in clips if u.clip.endswith(c.rel)) for _, u in all_base}
        grp = {u.clip: next(c.group for c in clips if u.clip.endswith(c.rel)) for _, u in all_base}
        for v in variants[1:]:
            vu, ref_units = paired_units(all_base, load_units(out, v, k))
            ref = cases(ref_units, est, grp, k)
            scope = "whole clips" if all(u.label == "whole" for _, u in vu) else "every unit"
            text += [f"### variant `{v}` against `{variants[0]}` ({scope})", "",
                     variant_table(cases(vu, est, grp, k), ref, v), ""]
        return "\n".join(text)
    for v in variants:
        units = load_units(out, v, k)
        est = {u.clip: next(c.established for c in clips if u.clip.endswith(c.rel)) for _, u in units}
        grp = {u.clip: next(c.group for c in clips if u.clip.endswith(c.rel)) for _, u in units}
        res = cases(units, est, grp, k)
        text += [f"### variant `{v}`", "", *[x for t in TABLES for x in (table(res, t), "")],
                 "Paired differences from the default (points; 95 % interval over speaker groups):", "",
                 diff_table(res), "", "Cases: " + counts(res), "",
                 *[f"Weights of `{s}` ({', '.join(MEMBERS)}) per held-out fold: "
                   + ", ".join(str(tuple(round(x, 2) for x in w)) for w in res[s]["weights"])
                   for s in STACKED],
                 ""]
    return "\n".join(text)


def write_fusion(out: Path, variant: str, k: int, name: str, dest: Path) -> tuple[float, ...]:
    """Fit ``name``'s (a STACKED method) weights on the out-of-fold curves of EVERY fold and
    write them with their provenance as a ``models.fusion.fusion_from_file`` JSON."""
    import datetime
    import json

    units = load_units(out, variant, k)
    w = fit_stacking(units, -1, STACKED[name])
    members = [MEMBERS[i] for i in STACKED[name]]
    data = {"members": members, "weights": [round(float(w[i]), 3) for i in STACKED[name]],
            "fitted_by": "benchmarks/cv.py --phase report --write-fusion (grid search on out-of-fold "
                         "member curves of the speaker cross-validation)",
            "objective": "mean +-1 accuracy: whole clips and excerpts at 9 shifts, 5/15/25-frame windows",
            "cv": {"variant": variant, "folds": k, "units": len(units)},
            "date": datetime.date.today().isoformat()}
    dest.write_text(json.dumps(data, indent=1) + "\n")
    return w
