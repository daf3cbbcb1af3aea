"""The comparison table of every sync method on speaker-disjoint real clips (one command).

    python benchmarks/compare.py [--train] [--steps 1500] [--device cpu|cuda] [--nulls 4]

--train first trains every neural method with its recipe (``benchmarks/train.py``; checkpoints,
curves and run.json in runs/<name>/); without it the existing runs/<name>/model.safetensors are
used. Then every method (classical ones too) runs the shifted-case protocol of ``avsync
evaluate`` on the validation clips of ``src/avsync/data/realclips_split.jsonl`` (speakers never
seen in training), the model speed is timed, and the section between the comparison markers of
docs/BENCHMARKS.md is rewritten (plus runs/comparison.json).

Cost on 2 CPU cores (``--workers 2``): the embedding, matrix and classical methods take a few
minutes each; the pair classifiers and flow models (c3, c3_nosim, wlos, vocalist,
vocalist_nosim) took 20 min together on 2026-12-01, two fusions with c3 another 14 min. Use
``--reuse-cases`` to evaluate only methods not yet in runs/comparison_cases.json and
``--reuse-speeds`` to keep earlier timings (timings on a shared 2-core machine vary by up to 2x).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from comparison_report import PAPERS, render  # noqa: E402

CLASSICAL = ("avcorr", "qmi")
RECIPES: dict[str, list[str]] = {
    "syncnet": ["--method", "syncnet"],
    "landmark": ["--method", "landmark", "--label-offsets", "cache/train_offsets.json"],
    "landmark_raw": ["--method", "landmark"],
    "c3": ["--method", "c3", "--loss", "pm", "--eval-windows", "40"],
    "c3_nosim": ["--method", "c3", "--loss", "pm", "--set", "similarity_dim=0", "--steps", "600",
                 "--eval-windows", "40"],
    "wlos": ["--method", "wlos", "--init-from", "runs/c3/model.safetensors", "--steps", "1200",
             "--eval-windows", "50", "--patience", "5"],
    "wlos_scratch": ["--method", "wlos", "--steps", "1200", "--eval-windows", "50", "--patience", "5"],
    "simmatrix": ["--method", "simmatrix"],
    "vocalist": ["--method", "vocalist", "--loss", "pm", "--eval-windows", "40"],
    "vocalist_nosim": ["--method", "vocalist", "--loss", "pm", "--set", "similarity=false", "--steps", "600",
                       "--eval-windows", "40"],
}
"""Run name -> benchmarks/train.py arguments (order matters: wlos starts from c3). The pair
classifiers train with the multi-way "pm" loss over every shift |k| >= 2 of each window (their
``candidates`` forward shares the towers) and with their similarity skip: with BCE both sat at
ln 2, with 7 sampled negatives at ln 8 (docs/BENCHMARKS.md). ``c3_nosim`` / ``vocalist_nosim``
are the papers' heads under the same loss (the ablation)."""

TABLE: tuple[str, ...] = ("syncnet", "landmark", "simmatrix", "c3", "c3_nosim", "wlos", "vocalist",
                          "vocalist_nosim", "fused", "fused_c3", "landmark_c3")
"""The rows after the classical ones (docs/BENCHMARKS.md). The fusions (``models/fusion.py``)
have no run of their own: they use their members' shipped weights."""

SCRATCH = ("`python benchmarks/compare.py --workers 2 --cache cache/eval_val` (every row of the table, "
           "about an hour on 2 cores)")


def train_all(names: list[str], steps: int, device: str, extra: list[str]) -> None:
    """Train each run in turn (``landmark`` needs cache/train_offsets.json from
    benchmarks/label_offsets.py; made first when missing)."""
    if "landmark" in names and not (ROOT / "cache" / "train_offsets.json").is_file():
        subprocess.run([sys.executable, "benchmarks/label_offsets.py"], cwd=ROOT, check=True)
    for name in [n for n in names if n in RECIPES]:
        cmd = [sys.executable, "benchmarks/train.py", "--eval-every", "100", "--patience", "6",
               "--steps", str(steps), "--preset", "small", *RECIPES[name], "--device", device,
               "--out", f"runs/{name}", *extra]  # later options win: the recipe's over the defaults
        print("$", " ".join(cmd), file=sys.stderr, flush=True)
        subprocess.run(cmd, cwd=ROOT, check=True)


def val_manifest(clips_root: Path, out: Path) -> Path:
    """The validation rows of the speaker split as a JSON Lines clip list with absolute paths."""
    rows = [json.loads(x) for x in (ROOT / "src/avsync/data/realclips_split.jsonl").read_text().splitlines()
            if x.strip()]
    lines = [json.dumps({"path": str((clips_root / r["path"]).resolve()), "speaker": r["speaker"],
                         "source": r["path"].split("/")[0]}) for r in rows if r["split"] == "val"]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    return out


def method_specs(names: list[str]) -> dict[str, str]:
    """Display name -> what create_model takes: runs/NAME/model.safetensors when that run
    exists, else the registry name when it can be created (shipped weights, or a method
    without weights such as ``fused``)."""
    from avsync.errors import AvsyncError
    from avsync.models.registry import create_model

    specs = {n: n for n in CLASSICAL}
    for n in names:
        ckpt = ROOT / "runs" / n / "model.safetensors"
        if ckpt.is_file():
            specs[n] = str(ckpt)
            continue
        try:
            create_model(n)
        except AvsyncError:
            print(f"warning: {ckpt} missing and {n!r} is not a shipped method; left out", file=sys.stderr)
            continue
        specs[n] = n
        print(f"note: {ckpt} missing; using the registry's {n!r} (shipped weights, or none needed)",
              file=sys.stderr)
    return specs


def speed_case(manifest: Path) -> tuple:
    """(analysis with crops, audio features, fps, face-analysis seconds per minute) of the longest
    validation clip."""
    from avsync.inference import analyse_audio, analyse_video
    from avsync.io import probe

    paths = [Path(json.loads(x)["path"]) for x in manifest.read_text().splitlines() if x.strip()]
    path = max(paths, key=lambda p: probe(p).duration_s)
    info = probe(path)
    t0 = time.perf_counter()
    analysis = analyse_video(path, keep_crops=True)
    per_min = (time.perf_counter() - t0) / (info.duration_s / 60)
    return analysis, analyse_audio(path), info.fps, per_min, path


def _model_timing(model: torch.nn.Module, ninp, device: str) -> float:
    """Best of 2: ms per video frame of one model scoring 31 shifts (stride 1, batched, no caches)."""
    from avsync.models.scoring import NeuralSyncMethod

    model = model.to(device)
    best = np.inf
    for _ in range(2):
        t0 = time.perf_counter()
        NeuralSyncMethod(model, device=device, batch_size=1024).score(ninp, np.arange(-15, 16))
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    model.to("cpu")
    return 1000 * best / ninp.n_frames


def model_speed(spec: str, case: tuple, device: str) -> dict[str, float]:
    """Parameters, ms per video frame of the sync model(s) alone (31 shifts, stride 1, batched, no
    caches; a fusion: the sum over its trained members) on ``device``; on CPU also the scoring
    seconds per minute of video (all tracks, 12 nulls, drift) and the end-to-end seconds per
    minute (face analysis + scoring)."""
    from avsync.inference import synchronise, track_input
    from avsync.models.registry import create_model
    from avsync.models.syncnet import count_parameters

    analysis, audio, fps, analysis_per_min, _ = case
    minutes = (analysis.frame_times_s[-1] - analysis.frame_times_s[0] + 1 / fps) / 60
    out: dict[str, float] = {}
    method = create_model(spec)
    trained = [m.model for m in getattr(method, "members", [method]) if hasattr(m, "model")]
    if trained:
        ninp = track_input(max(analysis.tracks, key=lambda t: t.n_frames), audio, fps).neural
        out.update(params=sum(count_parameters(m) for m in trained),
                   **{f"ms_per_frame_{device}": sum(_model_timing(m, ninp, device) for m in trained)})
    if device == "cpu":
        t0 = time.perf_counter()
        synchronise(analysis, audio, fps, create_model(spec), drift=True)
        scoring = (time.perf_counter() - t0) / minutes
        out.update(scoring_s_per_min=scoring, e2e_s_per_min=analysis_per_min + scoring)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", action="store_true")
    ap.add_argument("--train-only", action="store_true",
                    help="stop after training (a GPU machine without PyAV/mediapipe: carry cache/train "
                         "and cache/train_offsets.json there, bring runs/ back, evaluate here)")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--clips", type=Path, default=ROOT.parent / "shared" / "data" / "realclips")
    ap.add_argument("--nulls", type=int, default=4, help="null rolls per whole-clip case (all methods)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--shifts", default="-15..15..3", help="planted shifts (frames), the same for all")
    ap.add_argument("--methods", default=",".join(TABLE), help="rows besides the classical ones")
    ap.add_argument("--train-args", default="", help="extra arguments for benchmarks/train.py")
    ap.add_argument("--cache", type=Path, default=ROOT / "cache" / "eval", help="face-analysis cache")
    ap.add_argument("--reuse-cases", action="store_true",
                    help="keep the cases of runs/comparison_cases.json for methods already in it "
                         "(same checkpoint path or name) and evaluate only the others")
    ap.add_argument("--reuse-speeds", action="store_true",
                    help="keep the timings of runs/comparison.json for methods already timed there")
    args = ap.parse_args(argv)
    names = [n for n in args.methods.split(",") if n]
    if args.train or args.train_only:
        train_all(names, args.steps, args.device, args.train_args.split())
    if args.train_only:
        return 0
    from avsync.evaluation.protocol import evaluate
    from avsync.models.registry import create_model

    manifest = val_manifest(args.clips, ROOT / "runs" / "val_clips.jsonl")
    specs = method_specs(names)
    t0 = time.perf_counter()
    cases_json = ROOT / "runs" / "comparison_cases.json"
    from avsync.evaluation.protocol import parse_range

    old = json.loads(cases_json.read_text()) if args.reuse_cases and cases_json.is_file() else []
    old = [c for c in old if c["method"] in specs.values()]
    todo = [v for v in specs.values() if v not in {c["method"] for c in old}]
    print(f"evaluating {todo}; reusing the cases of {sorted({c['method'] for c in old})}", file=sys.stderr)
    if todo:
        new_json = cases_json.with_suffix(".new.json")
        evaluate(manifest, todo, parse_range(args.shifts), [5, 7, 9, 11, 13, 15],
                 args.cache, workers=args.workers, json_path=new_json, n_null=args.nulls)
        cases_json.write_text(json.dumps(old + json.loads(new_json.read_text())))
        new_json.unlink()
    eval_s = time.perf_counter() - t0
    old_speeds = {}
    if args.reuse_speeds and (ROOT / "runs" / "comparison.json").is_file():
        old_speeds = json.loads((ROOT / "runs" / "comparison.json").read_text()).get("speeds", {})
    case = speed_case(manifest)
    gpu = torch.cuda.is_available()
    speeds = {name: old_speeds.get(name) or {
        **model_speed(spec, case, "cpu"), **(model_speed(spec, case, "cuda") if gpu else {})}
        for name, spec in specs.items()}
    runs = {n: json.loads((ROOT / "runs" / n / "run.json").read_text())
            for n in specs if (ROOT / "runs" / n / "run.json").is_file()}
    cases = json.loads(cases_json.read_text())
    by_spec = {v: k for k, v in specs.items()}
    for c in cases:
        c["method"] = by_spec.get(c["method"], c["method"])
    machine = f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, " + (
        torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")
    min_frames = {n: int(getattr(create_model(spec), "min_frames", 1)) for n, spec in specs.items()}
    text = render(cases, list(specs), speeds, runs, {
        "command": "python " + " ".join(["benchmarks/compare.py", *(argv or sys.argv[1:])]),
        "date": datetime.date.today().isoformat(), "machine": machine,
        "n_clips": len(manifest.read_text().splitlines()), "nulls": args.nulls, "shifts": args.shifts,
        "speed_clip": str(case[4]), "analysis_s_per_min": case[3],
        "eval_text": eval_text(eval_s, len(todo), len(specs))}, min_frames)
    (ROOT / "runs" / "comparison.json").write_text(json.dumps(
        {"speeds": speeds, "runs": runs, "papers": PAPERS}, indent=1, default=str))
    write_section(ROOT / "docs" / "BENCHMARKS.md", text)
    print(text)
    return 0


def eval_text(eval_s: float, n_evaluated: int, n_methods: int) -> str:
    """The report's sentence on how long the evaluation took and which cases were reused."""
    if n_evaluated == 0:
        return ("Every method's cases came from earlier invocations of the same protocol (`--reuse-cases`); "
                f"from scratch: {SCRATCH}.")
    reused = n_methods - n_evaluated
    tail = f" (the other {reused} methods' cases came from earlier ones, same protocol)" if reused else ""
    return f"Evaluating {n_evaluated} methods took {eval_s / 60:.0f} min{tail}" + (
        f"; from scratch: {SCRATCH}." if reused else ".")


def write_section(doc: Path, text: str, name: str = "comparison") -> None:
    """Replace (or append) the section ``<!-- NAME:start -->`` .. ``<!-- NAME:end -->`` of the
    benchmarks document, atomically."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    old = doc.read_text(encoding="utf-8") if doc.is_file() else "# Benchmarks\n"
    block = f"{start}\n{text.strip()}\n{end}"
    if start in old and end in old:
        new = old[:old.index(start)] + block + old[old.index(end) + len(end):]
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    tmp = doc.with_name("." + doc.name + ".tmp")
    tmp.write_text(new, encoding="utf-8")
    tmp.replace(doc)


if __name__ == "__main__":
    raise SystemExit(main())
