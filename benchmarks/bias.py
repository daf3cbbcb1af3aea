"""Zero bias of the sync methods on corpora whose sync is established, and its calibration.

    python benchmarks/bias.py [--clips ../shared/data/realclips] [--cache cache/eval]
        [--out out/bias.json] [--trained landmark,c3,syncnet,simmatrix,vocalist]
        [--write]   # --write: store the estimates in the shipped weights of --trained

The zero is the convention of the corpora the field trusts: GRID (recorded in sync) and
LRS2/LRS3 as published. Their clips in the realclips MANIFEST are grouped by source repository
(ESTABLISHED); SparseSync's LRS3 copy was re-encoded off sync (every method reads it 2-3 frames
late), so it is reported but left out of every estimate (OFF_SYNC).

For each clip and method: the sub-frame peak of the uncalibrated curve (``bias_frames`` = 0 for
the trained members; fusions fuse the uncalibrated members), i.e. the method's error on an
in-sync clip. A trained method's bias is the median of those peaks. Reported:

* before: median raw error over the established clips, with a bootstrap 95 % interval (clips
  resampled);
* after (leave-one-source-out): every clip re-scored with the trained members calibrated by the
  median of the OTHER sources' clips, median error over all clips (+ interval) and per source;
* the syncnet_python demo clip (DEMO; SyncNet reads its audio early by 3 frames) before / after
  the shipped calibration.

The shipped value (``--write``: the checkpoint's ``calibration`` metadata) is the median over
all established sources; the honest after-figure is the LOSO one. Training-free methods are
measured, not calibrated.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import platform
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from avsync.errors import AvsyncError
from avsync.evaluation.cache import cached_analysis
from avsync.inference import analyse_audio, synchronise
from avsync.models.registry import create_model

ESTABLISHED: dict[str, str] = {
    "LipNet/evaluation/samples/GRID/": "GRID (rizkiarm/LipNet)",
    "osalinasv-lipnet/": "GRID s1 (osalinasv/lipnet)",
    "UoA-CARES-LipNet/": "GRID/LRS2 (UoA-CARES/LipNet)",
    "AVCrossNet/": "LRS3 (mtanveer1/AVCrossNet)",
    "usr/muxed/": "LRS3 (usr)",
    "SparseSync/": "LRS3 (v-iashin/SparseSync)",
}
"""MANIFEST path prefix -> source (corpus and repository) of the established-corpus clips."""

OFF_SYNC: frozenset[str] = frozenset({"LRS3 (v-iashin/SparseSync)"})
"""Sources whose copy is known to be off sync: reported, never in an estimate."""

DEMO: tuple[str, float] = ("syncnet_python-QinSy77/data/guangfan.avi", -3.0)
"""syncnet_python's demo clip and SyncNet's reading of it (frames, audio early)."""

TRAINED: tuple[str, ...] = ("landmark", "c3", "syncnet", "simmatrix", "vocalist")
"""The shipped trained methods (``--trained`` picks some of them)."""
FUSIONS: tuple[str, ...] = ("landmark_c3", "stacked")
"""Fusions reported (their members are scored by the same, calibrated instances)."""
N_NULL: int = 4
N_BOOT: int = 2000


def established_clips(root: Path) -> list[tuple[str, str]]:
    """[(MANIFEST path, source)] of the established-corpus clips."""
    with open(root / "MANIFEST.tsv", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    out = []
    for r in rows:
        src = next((s for p, s in ESTABLISHED.items() if r["path"].startswith(p)), None)
        if src is not None:
            out.append((r["path"], src))
    return out


class Scorer:
    """The methods of one run with shared model instances (their caches) and settable biases."""

    def __init__(self, trained: tuple[str, ...] = TRAINED) -> None:
        self.trained = trained
        self.models = {m: create_model(m) for m in ("avcorr", *trained)}
        self.fusions = {}
        for name in FUSIONS:
            f = create_model(name)
            if all(m in self.models for m in f.config.members):
                f._members = [self.models[m] for m in f.config.members]  # share instances (biases)
                self.fusions[name] = f
        self.methods = (*self.models, *self.fusions)

    def peaks(self, path: Path, cache: Path, biases: dict[str, float], whole: dict | None = None
              ) -> dict[str, float]:
        """Sub-frame peak (frames) of every method on ``path`` with the trained ``biases``;
        ``whole`` (if given) receives the whole-frame peaks (argmax, the reading before sub-frame
        refinement)."""
        for m in self.trained:
            self.models[m].bias_frames = biases[m]
        analysis = cached_analysis(path, cache, keep_crops=True)
        audio = analyse_audio(path)
        out = {}
        for name in self.methods:
            model = self.models.get(name) or self.fusions[name]
            _, cs = synchronise(analysis, audio, analysis.fps, model, drift=False, n_null=N_NULL)
            out[name] = float(cs.offset_frames)
            if whole is not None:
                whole[name] = int(cs.shifts_frames[int(np.nanargmax(cs.scores))])
        return out


def boot_median(x: Iterable[float], seed: int = 0) -> tuple[float, float, float]:
    """(median, 2.5 %, 97.5 %) of the median of ``x`` under bootstrap resampling."""
    x = np.asarray(list(x), np.float64)
    rng = np.random.default_rng(seed)
    meds = np.median(x[rng.integers(0, len(x), (N_BOOT, len(x)))], axis=1)
    return float(np.median(x)), float(np.percentile(meds, 2.5)), float(np.percentile(meds, 97.5))


def loso_biases(raw: list[dict], sources: list[str], trained: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Held-out source -> trained method -> median raw peak over the other sources' clips."""
    out = {}
    for held in sorted(set(sources)):
        keep = [r for r, s in zip(raw, sources, strict=True) if s != held and s not in OFF_SYNC]
        out[held] = {m: float(np.median([r[m] for r in keep])) for m in trained}
    return out


def fmt(t: tuple[float, float, float]) -> str:
    return f"{t[0]:+.2f} [{t[1]:+.2f}, {t[2]:+.2f}]"


def report(rows: list[dict], shipped: dict[str, float], demo: dict, methods: tuple[str, ...]) -> str:
    est = [r for r in rows if r["source"] not in OFF_SYNC]
    lines = [f"{len(est)} established-corpus clips of {len({r['source'] for r in est})} sources "
             f"(+ {len(rows) - len(est)} off-sync SparseSync clip(s), reported only); errors in frames "
             "(> 0: read as audio late), median with a bootstrap 95 % interval.", "",
             "| method | shipped bias_frames | before, whole-frame peak: median / mean "
             "| before: median error | after (LOSO): median error | after: mean abs error "
             "| before / after incl. SparseSync |",
             "|---|---|---|---|---|---|---|"]
    for m in methods:
        ship = f"{shipped[m]:+.2f}" if m in shipped else ("members" if m in FUSIONS else "0 (training-free)")
        b, a = [r["raw"][m] for r in est], [r["loso"][m] for r in est]
        w = [r["raw_whole"][m] for r in est]
        lines.append(f"| {m} | {ship} | {np.median(w):+.1f} / {np.mean(w):+.2f} | {fmt(boot_median(b))} | "
                     f"{fmt(boot_median(a))} | "
                     f"{np.mean(np.abs(a)):.2f} | {np.median([r['raw'][m] for r in rows]):+.2f} / "
                     f"{np.median([r['loso'][m] for r in rows]):+.2f} |")
    lines += ["", "Per source (median error before -> after LOSO, frames):", "",
              "| source | clips | " + " | ".join(methods) + " |", "|---|---|" + "---|" * len(methods)]
    for src in dict.fromkeys(r["source"] for r in rows):
        sel = [r for r in rows if r["source"] == src]
        cells = [f"{np.median([r['raw'][m] for r in sel]):+.2f} -> "
                 f"{np.median([r['loso'][m] for r in sel]):+.2f}" for m in methods]
        mark = " (off sync)" if src in OFF_SYNC else ""
        lines.append(f"| {src}{mark} | {len(sel)} | " + " | ".join(cells) + " |")
    if demo:
        lines += ["", f"syncnet_python demo clip `{DEMO[0]}` (SyncNet: {DEMO[1]:+.0f} frames), "
                  "before -> after the shipped calibration: "
                  + ", ".join(f"{m} {demo['raw'][m]:+.1f} -> {demo['shipped'][m]:+.1f}" for m in methods)]
    return "\n".join(lines)


def write_calibration(shipped: dict[str, float], n_clips: int, sources: list[str]) -> None:
    """Store ``bias_frames`` in the ``calibration`` metadata of the shipped weights."""
    from safetensors.torch import load_file

    from avsync.models.trained import weights_path
    from avsync.train.checkpoint import FORMAT, raw_metadata, write_safetensors

    for m, b in shipped.items():
        path = weights_path(m)
        meta = raw_metadata(path, FORMAT, "neural")
        meta["calibration"] = json.dumps({
            "bias_frames": round(b, 2), "estimate": "median sub-frame peak of the uncalibrated curve",
            "clips": n_clips, "sources": sorted(set(sources)), "by": "benchmarks/bias.py",
            "date": datetime.date.today().isoformat()}, sort_keys=True)
        write_safetensors(path, load_file(str(path)), meta)
        print(f"{path}: calibration bias_frames {b:+.2f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=Path, default=Path("../shared/data/realclips"))
    ap.add_argument("--cache", type=Path, default=Path("cache/eval"))
    ap.add_argument("--out", type=Path, default=Path("out/bias.json"))
    ap.add_argument("--trained", default=",".join(TRAINED), help="trained methods to measure")
    ap.add_argument("--write", action="store_true", help="store the estimates in the shipped weights")
    args = ap.parse_args(argv)
    trained = tuple(m for m in args.trained.split(",") if m)
    if set(trained) - set(TRAINED):
        ap.error(f"--trained: one of {', '.join(TRAINED)}")
    clips = established_clips(args.clips)
    scorer = Scorer(trained)
    zero = dict.fromkeys(trained, 0.0)
    rows = []
    for path, src in clips:
        whole: dict[str, int] = {}
        try:
            raw = scorer.peaks(args.clips / path, args.cache, zero, whole)
        except AvsyncError as exc:
            print(f"skip {path}: {exc}", file=sys.stderr)
            continue
        rows.append({"path": path, "source": src, "raw": raw, "raw_whole": whole})
        print(f"{path[:60]:60s} raw " + " ".join(f"{m} {v:+.2f}" for m, v in rows[-1]["raw"].items()),
              file=sys.stderr, flush=True)
    loso = loso_biases([r["raw"] for r in rows], [r["source"] for r in rows], trained)
    for r in rows:
        r["loso_bias"] = loso[r["source"]]
        r["loso"] = scorer.peaks(args.clips / r["path"], args.cache, loso[r["source"]])
    est = [r for r in rows if r["source"] not in OFF_SYNC]
    shipped = {m: float(np.median([r["raw"][m] for r in est])) for m in trained}
    demo = {}
    if (args.clips / DEMO[0]).is_file():
        demo = {"raw": scorer.peaks(args.clips / DEMO[0], args.cache, zero),
                "shipped": scorer.peaks(args.clips / DEMO[0], args.cache, shipped)}
    text = report(rows, shipped, demo, scorer.methods)
    print(f"# bias.py, {datetime.date.today()}, {platform.machine()} CPU\n\n{text}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "shipped": shipped, "loso": loso, "demo": demo},
                                   indent=1))
    if args.write:
        write_calibration(shipped, len(est), [r["source"] for r in est])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
