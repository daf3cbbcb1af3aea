"""Accuracy cost of `detect --fast` (landmarks on every other frame, interpolated between).

    python benchmarks/fast_accuracy.py [--split val] [--shifts -15..15..3] [--method landmark_c3]

For each clip of the split (src/avsync/data/realclips_split.jsonl, clips under
../shared/data/realclips) the face analysis runs twice, default and fast; then the audio is
shifted by k frames (evaluation.protocol's padding/trimming) and the whole-clip offset searched
(+-15 frames, 4 null rolls, no drift), the same cases for both. Prints accuracy within +-1 and
+-2 whole frames of the planted shift (the offset rounded, as evaluation.protocol), the
sub-frame error, the confidences, the fraction of answers the two variants share, and the
face-analysis time of each.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from avsync.evaluation.protocol import parse_range
from avsync.features import audio_features, shift_samples
from avsync.inference import analyse_video, synchronise
from avsync.io import load_audio, probe
from avsync.models.registry import create_model, needs_neural

ROOT = Path(__file__).resolve().parents[1]
REALCLIPS = ROOT.parent / "shared" / "data" / "realclips"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", default="val")
    ap.add_argument("--shifts", default="-15..15..3")
    ap.add_argument("--method", default="landmark_c3")
    ap.add_argument("--clips", type=Path, default=REALCLIPS)
    args = ap.parse_args()
    rows = [json.loads(x) for x in (ROOT / "src/avsync/data/realclips_split.jsonl").read_text().splitlines()
            if x.strip()]
    paths = [args.clips / r["path"] for r in rows if r["split"] == args.split]
    shifts = parse_range(args.shifts)
    model = create_model(args.method)
    err: dict[str, list[float]] = {"default": [], "fast": []}
    conf: dict[str, list[float]] = {"default": [], "fast": []}
    whole: dict[str, list[int]] = {"default": [], "fast": []}
    secs = {"default": 0.0, "fast": 0.0}
    same = total = 0
    for p in paths:
        if not p.is_file():
            print(f"skip {p} (missing)")
            continue
        fps = probe(p).fps
        analyses = {}
        for v in ("default", "fast"):
            t0 = time.perf_counter()
            analyses[v] = analyse_video(p, keep_crops=needs_neural(model), fast=v == "fast")
            secs[v] += time.perf_counter() - t0
        fps = analyses["default"].rate_fps or fps
        audio = load_audio(p)
        line = []
        for k in shifts:
            feats = audio_features(shift_samples(audio.samples, k, fps), audio.start_s)
            pred = {}
            for v, a in analyses.items():
                try:
                    _, cs = synchronise(a, feats, fps, model, drift=False, n_null=4)
                    pred[v], c = float(cs.offset_frames), float(cs.confidence)
                except Exception as exc:  # noqa: BLE001  (a clip without a usable face)
                    pred[v], c = np.nan, np.nan
                    line.append(f"{v}: {type(exc).__name__}")
                err[v].append(abs(pred[v] - k))
                conf[v].append(c)
                whole[v].append(abs(int(round(pred[v])) - k) if np.isfinite(pred[v]) else 99)
            same += int(round(pred["default"]) == round(pred["fast"]))
            total += 1
        print(f"{p.relative_to(args.clips)}: " + " ".join(
            f"{k:+d}:{err['default'][-len(shifts) + i]:.1f}/{err['fast'][-len(shifts) + i]:.1f}"
            for i, k in enumerate(shifts)) + (f" ({'; '.join(line)})" if line else ""), flush=True)
    print(f"\n{len(paths)} clips x {len(shifts)} shifts, method {args.method}\n")
    print("| variant | ±1 whole % | ±2 whole % | sub-frame |error| <= 1 % | mean abs error (frames) | "
          "median confidence | confidence >= 3 % | face analysis s |")
    print("|---|---|---|---|---|---|---|---|")
    for v in ("default", "fast"):
        e = np.asarray(err[v])
        e = np.where(np.isfinite(e), e, 99.0)
        w, c = np.asarray(whole[v]), np.asarray(conf[v])
        print(f"| {v} | {100 * np.mean(w <= 1):.1f} | {100 * np.mean(w <= 2):.1f} | "
              f"{100 * np.mean(e <= 1.0):.1f} | {np.mean(np.minimum(e, 15)):.2f} | "
              f"{np.nanmedian(c):.2f} | {100 * np.mean(c >= 3.0):.1f} | {secs[v]:.0f} |")
    dc = np.asarray(conf["fast"]) - np.asarray(conf["default"])
    print(f"\nconfidence fast - default: median {np.nanmedian(dc):+.2f}, "
          f"10th-90th percentile {np.nanpercentile(dc, 10):+.2f} .. {np.nanpercentile(dc, 90):+.2f}")
    print(f"\nsame whole-frame answer in {same} of {total} cases")


if __name__ == "__main__":
    main()
