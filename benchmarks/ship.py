"""Copy trained checkpoints into the package (src/avsync/weights/) with a model card each.

    python benchmarks/ship.py syncnet landmark=landmark_raw simmatrix

For each NAME (or NAME=RUN): runs/RUN/model.safetensors -> src/avsync/weights/NAME.safetensors, and
src/avsync/weights/NAME.md from runs/NAME/run.json (data, recipe, validation metrics during
training) and the comparison table's row in runs/comparison.json / docs/BENCHMARKS.md.
A freshly trained checkpoint has no zero calibration: run ``python benchmarks/bias.py --write``
after shipping (it stores ``bias_frames`` in the shipped weights' metadata), then ship.py again
only for the card, or add the card's calibration line by hand.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def default_method() -> tuple[str, str]:
    """(the registry's default method, what it is made of) for the cards' Limits line."""
    from avsync.models.registry import DEFAULT_METHOD, create_model

    members = getattr(create_model(DEFAULT_METHOD), "members", None)
    desc = " + ".join(f"`{m.name}`" for m in members) + ", curves fused" if members else "one method"
    return DEFAULT_METHOD, desc


def calibration_line(meta: dict) -> str:
    """The card's line on the checkpoint's ``calibration`` metadata (benchmarks/bias.py)."""
    cal = meta.get("calibration") or {}
    if "bias_frames" not in cal:
        return "none stored (run `python benchmarks/bias.py --write`)."
    return (f"`bias_frames` {cal['bias_frames']:+.2f} (the curve's peak on {cal.get('clips')} in-sync "
            "GRID/LRS2/LRS3 clips; `score` reads the curve that far away; docs/BENCHMARKS.md "
            "\"Zero calibration and sub-frame offsets\").")


def card(name: str, run: dict, meta: dict, row: str) -> str:
    best = run.get("best", {})
    moves = [m for m in run.get("label_moves", []) if m]
    args = run.get("args", {})
    preset = meta.get("preset", args.get("preset", ""))
    recipe = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in args.items() if v not in ("None", "False"))
    loss = json.loads(meta.get("task", "{}")).get("loss", "?")
    default, default_desc = default_method()
    return f"""# Model card: `{name}`

- **Family**: `{meta['method']}` ({preset} preset), {run.get('parameters')} parameters,
  weights `{name}.safetensors` (safetensors; the frozen config and the preprocessing spec are in its
  metadata: `avsync.train.checkpoint.read_metadata`).
- **Use**: `avsync detect VIDEO --method {name}` (CPU is fine).
- **Data**: the training split of `src/avsync/data/realclips_split.jsonl` — {run.get('train_clips')} real
  clips, {run.get('train_speakers')} speakers, {run.get('train_windows')} training windows, from
  `../shared/data/realclips` (public talking-face clips; see its MANIFEST). Validation: {run.get('val_clips')}
  clips of {run.get('val_speakers')} other speakers.
- **Label correction**: {len(moves)} training clips re-centred on their own offset estimated by the
  classical method (`benchmarks/label_offsets.py`; moves {sorted(moves)}).
- **Recipe**: `python benchmarks/train.py {recipe}`;
  loss {loss} (auto = the family's usual loss), augmentation on,
  AdamW + warm-up + cosine decay, early stopping on validation accuracy; best step {run.get('best_step')} of
  {run.get('steps_run')}, {run.get('seconds')} s on {run.get('device')}.
- **Validation during training** (one window, ±1 frame of 31 shifts): {best.get('val_acc', float('nan')):.3f};
  15-frame context {best.get('val_acc_ctx15', float('nan')):.3f} (chance 0.097).
- **Zero calibration**: {calibration_line(meta)}
- **Measured in the comparison table** (docs/BENCHMARKS.md, same protocol for every method):

{row}

- **Limits**: trained on about six minutes of real video, so it is far weaker than the papers'
  models (trained on hundreds of hours). The default method is `{default}` ({default_desc}),
  chosen on held-out speakers (README "Methods", docs/BENCHMARKS.md). The confidence threshold
  (3.0) was calibrated on `avcorr`; docs/BENCHMARKS.md ("Confidence of the trained methods")
  shows how it transfers to the trained methods on held-out speakers.
"""


def main(names: list[str]) -> int:
    from avsync.train.checkpoint import read_metadata

    doc = (ROOT / "docs" / "BENCHMARKS.md").read_text(encoding="utf-8")
    header = next((ln for ln in doc.splitlines() if ln.startswith("| method | params")), "")
    out_dir = ROOT / "src" / "avsync" / "weights"
    out_dir.mkdir(parents=True, exist_ok=True)
    for spec in names:
        name, _, run_name = spec.partition("=")
        run_name = run_name or name
        src = ROOT / "runs" / run_name / "model.safetensors"
        run = json.loads((ROOT / "runs" / run_name / "run.json").read_text())
        meta = read_metadata(src)
        row = next((ln for ln in doc.splitlines() if ln.startswith(f"| {run_name} |")), "(not in the table)")
        table = f"{header}\n|{'---|' * (header.count('|') - 1)}\n{row}" if header else row
        shutil.copyfile(src, out_dir / f"{name}.safetensors")
        (out_dir / f"{name}.md").write_text(card(name, run, meta, table), encoding="utf-8")
        print(f"shipped {name}: {(out_dir / f'{name}.safetensors').stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
