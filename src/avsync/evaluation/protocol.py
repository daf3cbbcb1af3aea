"""The shifted-case protocol: pad/trim each in-sync clip's audio by k frames and recover k.

Reports (per method): accuracy with |predicted - true| <= 1 frame searching +-15 frames at
context lengths 5..15 frames (VocaLiST's protocol) and at whole-clip context, accuracy within
+-2, mean absolute error over shifts -9..+9 (WLOS's protocol), shift consistency
(predicted(k) - predicted(0) == k, +-1), and per-speaker accuracy. The face analysis of each
clip (the slow part) is cached on disk, keyed by file identity and analysis settings.
"""

from __future__ import annotations

import json
import platform
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from avsync.errors import AvsyncError
from avsync.evaluation.cache import cached_analysis
from avsync.evaluation.clips import Clip, load_clips
from avsync.features import audio_features, shift_samples
from avsync.inference import N_NULL, shifts_for, synchronise, track_input
from avsync.io import load_audio
from avsync.models.registry import create_model, needs_neural
from avsync.timing import DEFAULT_MAX_OFFSET_FRAMES

MAX_WINDOWS: int = 12
"""Windows per (clip, shift, context) for the short-context accuracy."""


def parse_range(text: str) -> list[int]:
    """'-15..15' or '-15..15..3' or '0,3,-3' -> list of ints."""
    text = text.strip()
    if ".." in text:
        parts = [int(p) for p in text.split("..")]
        step = parts[2] if len(parts) > 2 else 1
        if len(parts) not in (2, 3) or step <= 0 or parts[0] > parts[1]:
            raise ValueError(f"bad range {text!r}; use a..b or a..b..step")
        return list(range(parts[0], parts[1] + 1, step))
    return [int(p) for p in text.split(",") if p.strip()]


@dataclass
class Case:
    clip: str
    speaker: str
    source: str
    method: str
    shift: int
    context: str  # "whole" or a number of frames
    predicted: int
    confidence: float


def _windows(n_frames: int, size: int) -> list[int]:
    starts = list(range(0, n_frames - size + 1, size))
    if len(starts) > MAX_WINDOWS:
        starts = [starts[i] for i in np.linspace(0, len(starts) - 1, MAX_WINDOWS).astype(int)]
    return starts


def evaluate_clip(clip: Clip, analysis, methods: Sequence[str], shifts: Sequence[int],
                  contexts: Sequence[int], max_offset: int = DEFAULT_MAX_OFFSET_FRAMES,
                  n_null: int = N_NULL) -> list[Case]:
    """All cases of one clip: every method x shift x context."""
    audio = load_audio(clip.path)
    fps = analysis.fps
    grid = shifts_for(max_offset)
    main = max(analysis.tracks, key=lambda t: t.n_frames)
    cases = []
    models = {name: create_model(name) for name in methods}
    for k in shifts:
        feats = audio_features(shift_samples(audio.samples, k, fps), audio.start_s)
        for name, model in models.items():
            _, cs = synchronise(analysis, feats, fps, model, max_offset, drift=False, n_null=n_null)
            cases.append(Case(str(clip.path), clip.speaker, clip.source, name, k, "whole",
                              int(round(cs.offset_frames)), cs.confidence))
            inp = track_input(main, feats, fps)
            for size in contexts:
                for start in _windows(inp.n_frames, size):
                    scores = model.score(inp.window(start, start + size), grid)
                    cases.append(Case(str(clip.path), clip.speaker, clip.source, name, k,
                                      str(size), int(grid[int(np.argmax(scores))]), np.nan))
    return cases


def _clip_job(args) -> tuple[int, list[Case] | str]:
    """Face analysis (cached) + all cases of one clip; an error becomes a one-line string."""
    i, clip, cache_dir, methods, shifts, contexts, n_null = args
    try:
        keep_crops = any(needs_neural(create_model(m)) for m in methods)
        analysis = cached_analysis(clip.path, cache_dir, keep_crops=keep_crops)
        if not analysis.tracks:
            return i, "no face track"
        return i, evaluate_clip(clip, analysis, methods, shifts, contexts, n_null=n_null)
    except AvsyncError as exc:
        return i, str(exc)
    except Exception as exc:  # noqa: BLE001  (one bad clip must not stop a corpus run)
        return i, f"{type(exc).__name__}: {exc}"


def evaluate(clips_spec: str | Path, methods: Sequence[str], shifts: Sequence[int],
             contexts: Sequence[int], cache_dir: Path, limit: int = 0, workers: int = 1,
             console=None, report_path: Path | None = None, json_path: Path | None = None,
             n_null: int = N_NULL) -> str:
    """Run the protocol; return (and optionally write) the markdown report.

    n_null: null rolls behind each whole-clip case's confidence (the same for every method)."""
    from rich.progress import Progress

    for m in methods:
        create_model(m)  # fail early on unknown names
    clips = load_clips(clips_spec)
    if limit:
        clips = clips[:limit]
    if not clips:
        raise AvsyncError(f"{clips_spec}: no clips found")
    t0 = time.perf_counter()
    failures: dict[str, str] = {}
    cases: list[Case] = []
    jobs = [(i, c, cache_dir, list(methods), list(shifts), list(contexts), n_null)
            for i, c in enumerate(clips)]
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("clips", total=len(jobs))
        # spawn, not fork: a parent that already ran torch (threads) can deadlock forked children
        pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn")) if workers > 1 else None
        results = pool.map(_clip_job, jobs) if pool else map(_clip_job, jobs)
        for i, res in results:
            if isinstance(res, str):
                failures[str(clips[i].path)] = res
            else:
                cases += res
            bar.advance(task)
        if pool:
            pool.shutdown()
    from avsync.evaluation.report import render_report

    text = render_report(cases, clips, failures, methods, shifts, contexts,
                         command_info={"clips": str(clips_spec), "seconds": time.perf_counter() - t0,
                                       "machine": f"{platform.machine()} {platform.processor()} "
                                       f"{platform.python_version()}"})
    if report_path is not None:
        from avsync.io import atomic_output

        with atomic_output(report_path, overwrite=True) as tmp:
            tmp.write_text(text, encoding="utf-8")
    if json_path is not None:
        from avsync.io import atomic_output

        with atomic_output(json_path, overwrite=True) as tmp:
            tmp.write_text(json.dumps([c.__dict__ for c in cases], default=float), "utf-8")
    return text


def summarise(cases: Sequence[Case]) -> dict:
    """Accuracy numbers for one method's cases."""
    out: dict = {}
    by_ctx = defaultdict(list)
    for c in cases:
        by_ctx[c.context].append(c)
    for ctx, cs in by_ctx.items():
        err = np.array([abs(c.predicted - c.shift) for c in cs])
        out[f"acc1_{ctx}"] = float(np.mean(err <= 1))
        out[f"acc2_{ctx}"] = float(np.mean(err <= 2))
    whole = by_ctx.get("whole", [])
    mae = [abs(c.predicted - c.shift) for c in whole if -9 <= c.shift <= 9]
    out["mae_whole_9"] = float(np.mean(mae)) if mae else float("nan")
    zero = {c.clip: c.predicted for c in whole if c.shift == 0}
    cons = [abs(c.predicted - zero[c.clip] - c.shift) <= 1 for c in whole if c.clip in zero]
    out["consistency"] = float(np.mean(cons)) if cons else float("nan")
    out["own_offset"] = zero
    return out
