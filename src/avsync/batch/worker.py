"""The per-input work of a batch, the same in every engine: detect, optionally fix, one JSON row.

A worker process (a pool process or a Ray actor) calls :func:`init_worker` once, so the sync
model is built once per worker and reused for every input, then :func:`process` per input.
The row is ``SyncResult.to_dict()`` plus ``input_id`` (and ``timings_s["cpu"]``, the worker
process's CPU seconds for the input, all threads) (and ``fixed``/``fix_error`` with
``--fix-dir``), or ``{"path", "input_id", "error"}`` when the input fails: a failure is data,
never an exception out of :func:`process`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from avsync.batch.inputs import BatchInput


@dataclass(frozen=True)
class WorkerConfig:
    """What every worker needs: the method and the optional fix folder."""

    method: str
    fix_dir: str | None = None
    threads: int = 1


_MODELS: dict[str, object] = {}


def init_worker(config: WorkerConfig) -> None:
    """Once per worker: one intra-op thread (the parallelism is across inputs), build the model."""
    os.environ.setdefault("OMP_NUM_THREADS", str(config.threads))
    import torch

    torch.set_num_threads(config.threads)
    model_for(config.method)


def model_for(method: str) -> object:
    """The worker's cached instance of ``method`` (built on first use)."""
    if method not in _MODELS:
        from avsync.models.registry import create_model

        _MODELS[method] = create_model(method)
    return _MODELS[method]


def fixed_path(fix_dir: str | Path, item: BatchInput) -> Path:
    """Where ``--fix-dir`` writes the corrected copy: ``DIR/{stem}.{input_id[:8]}.synced{suffix}``
    (the id keeps same-named files of different folders apart)."""
    p = Path(item.path)
    return Path(fix_dir) / f"{p.stem}.{item.input_id[:8]}.synced{p.suffix}"


def needs_fix(row: dict) -> bool:
    """Reliable, and more than the in-sync tolerance (1 frame) off."""
    from avsync.inference import IN_SYNC_TOLERANCE_FRAMES

    return bool(row.get("reliable")) and abs(float(row.get("offset_frames", 0))) > IN_SYNC_TOLERANCE_FRAMES


def _one_line(exc: BaseException) -> str:
    from avsync.cli_util import one_sentence
    from avsync.errors import AvsyncError

    if isinstance(exc, AvsyncError):
        return one_sentence(exc)
    return f"unexpected failure ({type(exc).__name__}: {one_sentence(exc)})"


def process(item: BatchInput, config: WorkerConfig) -> dict:
    """Measure one input (and fix it when asked); never raises for a bad input."""
    from avsync.inference import detect

    cpu0 = time.process_time()
    try:
        row = detect(item.path, method=model_for(config.method)).to_dict()
    except Exception as exc:  # noqa: BLE001  (one error line per input, the batch goes on)
        return {"path": item.path, "input_id": item.input_id, "error": _one_line(exc)}
    row["input_id"] = item.input_id
    if config.fix_dir is not None and needs_fix(row):
        from avsync import fix

        out = fixed_path(config.fix_dir, item)
        try:
            written, _ = fix(item.path, out, offset_ms=float(row["offset_ms"]), overwrite=True)
            row["fixed"] = str(written)
        except Exception as exc:  # noqa: BLE001
            row["fix_error"] = _one_line(exc)
    row.setdefault("timings_s", {})["cpu"] = round(time.process_time() - cpu0, 3)
    return row
