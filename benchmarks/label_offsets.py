"""Estimate each training clip's own audio-video offset (label correction, as the LRS corpora were synced).

    python benchmarks/label_offsets.py --cache cache/train --out cache/train_offsets.json

For every clip of the training cache: the face analysis (cached in cache/eval) and the audio are
scored with the classical method (avcorr, whole clip, independent of any trained model). The
JSON maps the cache file name to {"offset_frames", "confidence", "path"}. ``benchmarks/train.py
--label-offsets FILE`` then re-centres the positives of every clip whose estimate is confident
(>= the detection threshold) and small (|offset| <= --max-label-offset), and reports the moves.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from avsync.evaluation.cache import cached_analysis
from avsync.inference import analyse_audio, synchronise
from avsync.models.registry import create_model


def estimate(npz: Path, eval_cache: Path) -> dict:
    with np.load(npz, allow_pickle=False) as z:
        path = Path(str(z["path"]))
    analysis = cached_analysis(path, eval_cache)
    _, cs = synchronise(analysis, analyse_audio(path), analysis.fps, create_model("avcorr"), drift=False)
    return {"offset_frames": int(round(cs.offset_frames)), "confidence": round(float(cs.confidence), 3),
            "path": str(path)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, default=Path("cache/train"))
    ap.add_argument("--eval-cache", type=Path, default=Path("cache/eval"))
    ap.add_argument("--out", type=Path, default=Path("cache/train_offsets.json"))
    args = ap.parse_args(argv)
    out: dict[str, dict] = {}
    for npz in sorted(args.cache.glob("*.npz")):
        try:
            out[npz.name] = estimate(npz, args.eval_cache)
        except Exception as exc:  # noqa: BLE001  (report and go on)
            print(f"warning: {npz.name}: {exc}", file=sys.stderr)
            continue
        print(f"{npz.name:50s} {out[npz.name]['offset_frames']:+3d} conf {out[npz.name]['confidence']:.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(f"{len(out)} clips -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
