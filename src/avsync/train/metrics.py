"""Validation metrics of the training loop: offset accuracy of every window over 31 shifts
(regression models: over planted offsets), at one window and at a longer context."""

from __future__ import annotations

import numpy as np
import torch

from avsync.models.neural import PreparedClip, valid_window_starts, visual_tensor
from avsync.models.scoring import window_scores
from avsync.train.tasks import TaskConfig, near_mask

COUNT_KEYS: tuple[str, ...] = ("n", "correct", "speech_n", "speech_correct", "n_ctx", "correct_ctx", "ce",
                               "n_ce")


def clip_offset_counts(model: torch.nn.Module, clip: PreparedClip, task: TaskConfig,
                       device: torch.device | str, max_windows: int = 500,
                       context_frames: int = 15) -> dict[str, float]:
    """Offset-accuracy counts of one clip (true offset 0).

    Every window (stride 1, at most ``max_windows`` around the clip's middle) picks the argmax
    of its scores over the 31 shifts (``avsync.models.scoring.window_scores``); right when within
    +-1 frame. ``@ctx``: scores averaged over the windows of ``context_frames`` consecutive
    frames first (VocaLiST's protocol; none when the model's window is longer). Returns sums:
    n, correct, speech_n, speech_correct, n_ctx, correct_ctx, ce / n_ce (Perfect-Match
    cross-entropy, embedding and offsets models only).
    """
    frames = model.config.frames
    valid = clip.valid
    if max_windows and len(valid) - frames + 1 > max_windows:
        a = (len(valid) - frames + 1 - max_windows) // 2
        keep = np.zeros_like(valid)
        keep[a:a + max_windows + frames - 1] = True
        valid = valid & keep
    view = PreparedClip(clip.kind, clip.fps, clip.visual, valid, clip.audio, clip.starts, clip.name)
    if getattr(model, "output", "embedding") == "regression":
        return _regression_counts(model, view, device, context_frames)
    shifts = np.arange(-task.max_shift, task.max_shift + 1)
    starts, scores = window_scores(model, view, shifts, 1, device)
    full = np.isfinite(scores).all(1)
    starts, scores = starts[full], scores[full]
    out = dict.fromkeys(COUNT_KEYS, 0.0)
    if len(starts) == 0:
        return out
    c = task.max_shift
    right = np.abs(scores.argmax(1) - c) <= 1
    rows = model.config.audio_rows
    energy = clip.audio.mean(1)
    cum = np.concatenate([[0.0], np.cumsum(energy)])
    q = clip.starts[starts]
    speech = (cum[q + rows] - cum[q]) / rows >= np.percentile(energy, task.quiet_percentile)
    out.update(n=len(starts), correct=right.sum(), speech_n=speech.sum(),
               speech_correct=(right & speech).sum())
    output = getattr(model, "output", "embedding")
    if output in ("embedding", "offsets"):
        logits = (1 - scores**2 / 2) * model.logit_scale.item() if output == "embedding" else scores.copy()
        logits[:, near_mask(task, "cpu").numpy()] = -np.inf
        lse = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
        out.update(ce=float((lse - logits[:, c]).sum()), n_ce=len(starts))
    if context_frames >= frames:
        n_win = context_frames - frames + 1
        if len(starts) >= n_win:
            run = starts[n_win - 1:] - starts[: len(starts) - n_win + 1] == n_win - 1
            cs = np.concatenate([np.zeros((1, scores.shape[1])), np.cumsum(scores, 0)])
            avg = cs[n_win:] - cs[:-n_win]
            ok = np.abs(avg.argmax(1) - c) <= 1
            out.update(n_ctx=run.sum(), correct_ctx=(ok & run).sum())
    return {k: float(v) for k, v in out.items()}


def _regression_counts(model: torch.nn.Module, clip: PreparedClip, device: torch.device | str,
                       context_frames: int) -> dict[str, float]:
    """Counts for a regression model (WLOS protocol): every window sees its audio made late by
    each d in -max_offset..max_offset (planted, one case per d) and is right when
    |prediction - d| <= 1; ``@ctx``: predictions averaged over ``context_frames`` windows.
    (With the true offset always 0 a constant-0 predictor would look perfect.)"""
    from numpy.lib.stride_tricks import sliding_window_view

    cfg = model.config
    frames, rows, lim = cfg.frames, cfg.audio_rows, int(cfg.max_offset)
    rpf = rows // frames
    out = dict.fromkeys(COUNT_KEYS, 0.0)
    starts = valid_window_starts(clip.valid, frames)
    q = clip.starts[starts]
    starts = starts[(q - rpf * lim >= 0) & (q + rpf * lim + rows <= len(clip.audio))]
    if len(starts) == 0:
        return out
    d = np.arange(-lim, lim + 1)
    video = np.moveaxis(sliding_window_view(clip.visual, frames, axis=0), -1, 1)[starts]
    a_views = sliding_window_view(clip.audio, rows, axis=0).transpose(0, 2, 1)
    was = model.training
    model.eval()
    preds = np.zeros((len(starts), len(d)))
    with torch.no_grad():
        v = visual_tensor(np.ascontiguousarray(video), clip.kind, device)
        for j, dj in enumerate(d):
            a = torch.from_numpy(np.ascontiguousarray(a_views[clip.starts[starts] - rpf * dj],
                                                      dtype=np.float32)).to(device)
            preds[:, j] = model(v, a).float().cpu().numpy()
    model.train(was)
    right = np.abs(preds - d[None, :]) <= 1
    out.update(n=right.size, correct=right.sum(), speech_n=right.size, speech_correct=right.sum())
    n_win = context_frames - frames + 1
    if context_frames >= frames and len(starts) >= n_win:
        run = starts[n_win - 1:] - starts[: len(starts) - n_win + 1] == n_win - 1
        cs = np.concatenate([np.zeros((1, len(d))), np.cumsum(preds, 0)])
        ok = np.abs((cs[n_win:] - cs[:-n_win]) / n_win - d[None, :]) <= 1
        out.update(n_ctx=run.sum() * len(d), correct_ctx=(ok & run[:, None]).sum())
    return {k: float(v) for k, v in out.items()}


def offset_metrics(sums: dict[str, float], context_frames: int = 15) -> dict[str, float]:
    """Accuracies from summed ``clip_offset_counts``: val_acc (one window, +-1), val_acc_speech,
    val_acc_ctx{context_frames}, val_loss (Perfect-Match cross-entropy; NaN for models without
    one), val_windows."""
    div = lambda a, b: float(sums[a] / sums[b]) if sums[b] else float("nan")  # noqa: E731
    return {"val_acc": div("correct", "n"), "val_acc_speech": div("speech_correct", "speech_n"),
            f"val_acc_ctx{context_frames}": div("correct_ctx", "n_ctx"), "val_loss": div("ce", "n_ce"),
            "val_windows": float(sums["n"])}
