"""Speaker cross-validation of the sync methods over every real clip (issue 11, part 3).

    python benchmarks/cv.py [--cache /work/cache/train] [--out /work/cache/cv] [--k 5]
        [--variant base|recentred|audiopre|fast|mesh|meshfast (fast*, mesh*: --heldout-cache)]
        [--phase train|curves|report|all] [--fold F]

Every real clip with a training-cache entry (``avsync prepare``) is in exactly one of k folds;
folds hold whole speaker groups (``avsync.data.splits.speaker_group``, aliases applied), balanced
by seconds; GRID s1 (41 clips) is one group, so it is one fold's held-out set. For each fold:

1. train (``--phase train``): ``landmark`` and ``c3`` on the other folds' clips with their
   recipes (weights/landmark.md, weights/c3.md) at fixed, shortened step counts (no validation
   split to stop on: every clip outside the fold trains);
2. calibrate (part of ``curves``): each trained member's zero is the median sub-frame peak of its
   uncalibrated curve on the training folds' established-corpus clips (benchmarks/bias.py);
3. curves: the held-out clips (and 1.5/3/6 s excerpts of them) under the shifted-case protocol;
   every member's curve is stored (benchmarks/cv_curves.py) so that every fusion, and fusion
   weights fitted on the OTHER folds' out-of-fold curves (stacking), come from the same scores.

``--phase report`` (benchmarks/cv_report.py) prints the table: accuracy by duration bucket, short
windows, shift consistency, +-1 on established corpora, median bias, reliable share, each with a
95 % bootstrap interval over speaker groups. Variant ``recentred`` retrains with every training
clip's label re-centred on its out-of-fold offset from the ``base`` run (label-correction lever);
``audiopre`` retrains ``landmark`` with its audio tower pre-trained on speech without video
(``--audio-init``, benchmarks/pretrain_audio.py). ``fast`` keeps base's models and calibration
and scores the held-out clips on another cache (``--heldout-cache``: the landmarks of
``detect --fast``, benchmarks/prepare_fast.py); ``mesh`` does the same with the landmarks of
the ``mesh`` face backend (``prepare_fast.py --face-backend mesh --no-fast``).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bias import ESTABLISHED, OFF_SYNC  # noqa: E402
from cv_curves import CONTEXTS, EXCERPTS_S, GRID, AllWindows, TrackData, unit_curves, units  # noqa: E402

from avsync.data.splits import speaker_group  # noqa: E402
from avsync.evaluation.crossval import speaker_folds  # noqa: E402

TRAINED: tuple[str, ...] = ("landmark", "c3")
MEMBERS: tuple[str, ...] = ("avcorr", *TRAINED)
RECIPE: dict[str, dict] = {
    # weights/landmark.md and weights/c3.md, steps shortened to fit the CPU budget
    "landmark": {"loss": "auto", "steps": 400},
    "c3": {"loss": "pm", "steps": 300},
}
ROOT_MARK = "realclips/"


@dataclass(frozen=True)
class ClipMeta:
    npz: Path
    rel: str  # path relative to the realclips folder
    speaker: str
    group: str
    duration_s: float

    @property
    def source(self) -> str | None:
        """The established-corpus source (benchmarks/bias.py ESTABLISHED) or None."""
        return next((s for p, s in ESTABLISHED.items() if self.rel.startswith(p)), None)

    @property
    def established(self) -> bool:
        return self.source is not None and self.source not in OFF_SYNC


def catalogue(cache: Path) -> list[ClipMeta]:
    out = []
    for f in sorted(cache.glob("*.npz")):
        with np.load(f, allow_pickle=False) as z:
            path, speaker = str(z["path"]), str(z["speaker"])
            dur = len(z["frame_times_s"]) / float(z["fps"])
        rel = path.split(ROOT_MARK, 1)[-1]
        out.append(ClipMeta(f, rel, speaker, speaker_group(speaker), dur))
    return out


def assign_folds(clips: list[ClipMeta], k: int) -> dict[str, int]:
    seconds: dict[str, float] = {}
    for c in clips:
        seconds[c.group] = seconds.get(c.group, 0.0) + c.duration_s
    return speaker_folds(seconds, k)


HELDOUT = ("fast", "mesh")
"""Variants scoring base's models on the held-out clips of another front end's cache."""


def run_dir(out: Path, variant: str, fold: int) -> Path:
    return out / variant / f"fold{fold}"


def label_moves(out: Path, clips: list[ClipMeta], fold_of: dict[str, int], k: int,
                max_offset: int = 6, min_confidence: float = 3.0, min_move: int = 2) -> dict[str, int]:
    """Cache file name -> out-of-fold offset (frames) of the ``base`` run's landmark_c3, for
    confident (>= min_confidence) readings with min_move <= |offset| <= max_offset
    (benchmarks/train.py's rule, except that +-1 readings are left alone: the reader's own bias,
    -0.36 frame out of fold, turns many in-sync clips into -1)."""
    from cv_report import whole_reading

    moves: dict[str, int] = {}
    for f in range(k):
        with open(run_dir(out, "base", f) / "curves.pkl", "rb") as fh:
            ucs = pickle.load(fh)["units"]
        for uc in ucs:
            if uc.label != "whole":
                continue
            off, conf = whole_reading(uc, "landmark_c3", 0)
            name = next(c.npz.name for c in clips if c.rel in uc.clip or uc.clip.endswith(c.rel))
            if conf >= min_confidence and min_move <= abs(round(off)) <= max_offset:
                moves[name] = int(round(off))
    return moves


def train_fold(args, clips: list[ClipMeta], fold_of: dict[str, int], fold: int, method: str) -> Path:
    import torch

    from avsync.train import SyncDataset, TaskConfig, TrainConfig, build_model, seed_everything, train
    from avsync.train.checkpoint import save_checkpoint

    dest = run_dir(args.out, args.variant, fold) / f"{method}.safetensors"
    if dest.is_file():
        return dest
    if args.variant != "base" and method not in args.retrain.split(","):
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.symlink_to(run_dir(args.out, "base", fold) / f"{method}.safetensors")
        return dest
    torch.set_num_threads(1)
    files = [c.npz for c in clips if fold_of[c.group] != fold]
    moves = {}
    if args.variant == "recentred":
        mfile = args.out / "recentred" / "moves.json"
        if not mfile.is_file():
            mfile.parent.mkdir(parents=True, exist_ok=True)
            mfile.write_text(json.dumps(label_moves(args.out, clips, fold_of, args.k), indent=1))
        moves = json.loads(mfile.read_text())
    r = RECIPE[method]
    task = TaskConfig(loss=r["loss"])
    steps = int(r["steps"] * args.steps_scale)
    cfg = TrainConfig(steps=steps, batch_size=32, lr=1e-3, warmup_steps=min(100, max(1, steps // 10)),
                      eval_every=10**9, patience=0, seed=0)
    seed_everything(0)
    model = build_model(method, "small")
    init = {}
    if args.audio_init is not None and method == "landmark":
        from avsync.train.audio_pretrain import init_audio_tower

        path = Path(str(args.audio_init).format(fold=fold))
        init = {"audio_init": {"path": str(path), **init_audio_tower(model, path)}}
    ds = SyncDataset(files, model.visual_kind, task, frames=model.config.frames,
                     audio_rows=model.config.audio_rows, label_offsets=moves)
    res = train(model, ds, None, task, cfg, "cpu", log=None)
    moved = int(sum(1 for m in ds.label_offsets if m))
    save_checkpoint(dest, model, {"steps": steps, "seconds": round(res.seconds, 1), "train_clips": len(files),
                                  "train_windows": ds.n_windows, "label_moves": moved, **init}, method,
                    extra={"cv": {"fold": fold, "variant": args.variant, "k": args.k}})
    print(f"fold {fold} {method}: {steps} steps, {len(files)} clips, {moved} re-centred, "
          f"{res.seconds:.0f} s -> {dest}", flush=True)
    return dest


def load_members(args, fold: int, biases: dict[str, float] | None) -> dict[str, object]:
    from avsync.models.registry import create_model
    from avsync.models.scoring import NeuralSyncMethod

    models: dict[str, object] = {"avcorr": create_model("avcorr")}
    for m in TRAINED:
        path = run_dir(args.out, args.variant, fold) / f"{m}.safetensors"
        nm = NeuralSyncMethod.from_checkpoint(path, name=m)
        nm.bias_frames = 0.0 if biases is None else biases[m]
        models[m] = nm
    if biases is not None:
        for m in TRAINED:
            models[f"{m}_all"] = AllWindows(models[m], f"{m}_all")
    return models


def calibrate(args, clips: list[ClipMeta], fold_of: dict[str, int], fold: int) -> dict:
    """Median uncalibrated sub-frame peak of each trained member on the training folds'
    established clips (shift 0, whole clip)."""
    from cv_curves import segment_curves

    from avsync.features import audio_features
    from avsync.inference import peak_frames
    from avsync.io import load_audio

    models = load_members(args, fold, None)
    peaks: dict[str, list[float]] = {m: [] for m in TRAINED}
    for c in clips:
        if fold_of[c.group] == fold or not c.established:
            continue
        tr = TrackData.load(c.npz)
        audio = load_audio(tr.path)
        inp = tr.sync_input(audio_features(audio.samples, audio.start_s))
        for m in TRAINED:
            lens, cur = segment_curves(models[m], inp)
            peaks[m].append(peak_frames(GRID, (lens[:, None] * cur).sum(0) / lens.sum()))
    return {m: float(np.median(v)) for m, v in peaks.items()} | {"clips": len(peaks["landmark"])}


def foreign_audio(clip: ClipMeta, clips: list[ClipMeta]):
    """Audio features of another speaker group's clip at least as long (else the longest)."""
    from avsync.features import audio_features
    from avsync.io import load_audio

    others = [c for c in clips if c.group != clip.group]
    longer = sorted((c for c in others if c.duration_s >= clip.duration_s),
                    key=lambda c: (c.duration_s, c.rel))
    pick = longer[0] if longer else max(others, key=lambda c: c.duration_s)
    audio = load_audio(TrackData.load(pick.npz).path)
    return audio_features(audio.samples, audio.start_s)


def curves_fold(args, clips: list[ClipMeta], fold_of: dict[str, int], fold: int) -> Path:
    dest = run_dir(args.out, args.variant, fold) / "curves.pkl"
    lock = dest.with_suffix(".lock")
    if dest.is_file() or lock.exists():  # done, or another process is on it
        return dest
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(str(os.getpid()))
    t0 = time.perf_counter()
    biases = calibrate(args, clips, fold_of, fold)
    print(f"fold {fold}: calibration {biases}", flush=True)
    models = load_members(args, fold, biases)
    out = []
    for c in [c for c in clips if fold_of[c.group] == fold]:
        npz = c.npz if args.heldout_cache is None else args.heldout_cache / c.npz.name
        if not npz.is_file():
            print(f"fold {fold}: {c.rel[:60]} not in {args.heldout_cache}: left out", flush=True)
            continue
        tr = TrackData.load(npz)
        for u in units(tr, () if args.light else EXCERPTS_S):
            foreign = foreign_audio(c, clips) if u.label == "whole" and not args.light else None
            out.append(unit_curves(u, models, foreign, contexts=() if args.light else CONTEXTS))
        print(f"fold {fold}: {c.rel[:60]} ({time.perf_counter() - t0:.0f} s)", flush=True)
    with open(dest.with_suffix(".tmp"), "wb") as fh:
        pickle.dump({"units": out, "biases": biases, "fold": fold}, fh)
    dest.with_suffix(".tmp").replace(dest)
    lock.unlink()
    return dest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, default=Path("/work/cache/train"))
    ap.add_argument("--out", type=Path, default=Path("/work/cache/cv"))
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--variant", default="base",
                    help="base | recentred | audiopre[-NAME] (a pre-trained audio tower, --audio-init) | "
                         "fast[-NAME] | mesh[-NAME] (base's models, held-out clips from --heldout-cache)")
    ap.add_argument("--phase", default="all",
                    choices=("folds", "audio-lists", "train", "curves", "report", "all"))
    ap.add_argument("--fold", type=int, default=None, help="only this fold (train/curves)")
    ap.add_argument("--method", choices=TRAINED, default=None, help="only this method (train)")
    ap.add_argument("--steps-scale", type=float, default=1.0)
    ap.add_argument("--variants", default="base", help="report: comma-separated variants to compare")
    ap.add_argument("--retrain", default="landmark,c3",
                    help="variants other than base: members trained again (the others: base's)")
    ap.add_argument("--write-fusion", type=Path, default=None,
                    help="report: fit the stacked weights on every fold's out-of-fold curves, write JSON")
    ap.add_argument("--audio-init", type=Path, default=None,
                    help="train: start landmark's audio tower from these pre-trained conv blocks "
                         "(benchmarks/pretrain_audio.py; '{fold}' in the path is the fold number); "
                         "use with --variant audiopre")
    ap.add_argument("--nulls", type=int, default=None,
                    help="curves: null rolls behind each confidence (default cv_curves.N_NULL = 4; "
                         "detect uses 12); write such curves under their own --variant")
    ap.add_argument("--heldout-cache", type=Path, default=None,
                    help="curves: read the held-out clips from this cache (same file names), e.g. "
                         "benchmarks/prepare_fast.py's; use with --variant fast --retrain ''")
    ap.add_argument("--light", action="store_true",
                    help="curves: whole clips only (no excerpts, short windows or foreign audio)")
    args = ap.parse_args(argv)
    if not (args.variant in ("base", "recentred") or args.variant.startswith(("audiopre",) + HELDOUT)):
        ap.error(f"unknown variant {args.variant!r}")
    if args.variant.startswith(HELDOUT) and (args.heldout_cache is None or args.retrain):
        ap.error(f"a {args.variant} variant needs --heldout-cache and --retrain '' "
                 "(base's models, other landmarks)")
    if args.variant.startswith("audiopre") and args.phase in ("train", "all") and args.audio_init is None:
        ap.error("an audiopre variant needs --audio-init")
    if args.nulls is not None:
        import cv_curves

        cv_curves.N_NULL = max(1, args.nulls)
    clips = catalogue(args.cache)
    fold_of = assign_folds(clips, args.k)
    folds = range(args.k) if args.fold is None else [args.fold]
    if args.phase == "folds":
        for f in range(args.k):
            sel = [c for c in clips if fold_of[c.group] == f]
            print(f"fold {f}: {len(sel)} clips, {len({c.group for c in sel})} groups, "
                  f"{sum(c.duration_s for c in sel):.0f} s, established {sum(c.established for c in sel)}")
        return 0
    if args.phase == "audio-lists":  # per fold: the media of its training side, for --also
        for f in range(args.k):
            dest = args.out / "audio_lists" / f"fold{f}.txt"
            dest.parent.mkdir(parents=True, exist_ok=True)
            media = sorted({str(TrackData.load(c.npz).path) for c in clips if fold_of[c.group] != f})
            dest.write_text("\n".join(media) + "\n")
            print(f"fold {f}: {len(media)} training-side media -> {dest}")
        return 0
    if args.phase in ("train", "all"):
        for f in folds:
            for m in ([args.method] if args.method else TRAINED):
                train_fold(args, clips, fold_of, f, m)
    if args.phase in ("curves", "all"):
        for f in folds:
            curves_fold(args, clips, fold_of, f)
    if args.phase in ("report", "all"):
        from cv_report import report

        print(report(args.out, [v for v in args.variants.split(",") if v], clips, fold_of, args.k))
        if args.write_fusion:
            from cv_report import write_fusion

            w = write_fusion(args.out, args.variants.split(",")[0], args.k, "stacked", args.write_fusion)
            print(f"stacked weights {w} -> {args.write_fusion}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
