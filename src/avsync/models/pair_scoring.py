"""Pair-model scoring helpers of ``avsync.models.scoring``: many (video window, audio window)
pairs through a pair classifier (C3, VocaLiST), with as few tower passes as the model allows.

* ``pairs_towers``: models with separable towers (``encode_video``, ``encode_audio``,
  ``pair_head``; C3): tower features cached across calls, so the windows and null rolls of one
  track encode each video and audio window once;
* ``pairs_shared``: models whose forward takes ``candidates`` (towers once per call);
* ``batched``: any model, one forward per pair.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch

from avsync.models.neural import visual_tensor


def shares_candidates(model: torch.nn.Module) -> bool:
    """True when a pair model's forward takes ``candidates`` (towers once per window)."""
    return "candidates" in inspect.signature(model.forward).parameters


def pairs_shared(model: torch.nn.Module, views: np.ndarray, a_views: np.ndarray, starts: np.ndarray,
                 aq: np.ndarray, ws: np.ndarray, ks: np.ndarray, kind: str,
                 device: torch.device | str, batch_size: int) -> list[float]:
    """sigmoid(logit) of the pairs (window ws[i], shift ks[i]) through the ``candidates`` forward:
    for each chunk of windows, every distinct audio window is encoded once and each window is
    paired with all of its shifts (the pairs not asked for are computed and dropped)."""
    uw, inv_w = np.unique(ws, return_inverse=True)
    rows = np.clip(aq[uw], 0, len(a_views) - 1)  # (W', K); out-of-range shifts are never read
    per = max(1, batch_size // rows.shape[1])
    out = np.zeros(rows.shape, np.float64)
    for i in range(0, len(uw), per):
        ua, inv = np.unique(rows[i:i + per], return_inverse=True)
        v = visual_tensor(np.ascontiguousarray(views[starts[uw[i:i + per]]]), kind, device)
        a = torch.from_numpy(np.ascontiguousarray(a_views[ua], dtype=np.float32)).to(device)
        idx = torch.from_numpy(inv.reshape(rows[i:i + per].shape).astype(np.int64)).to(device)
        out[i:i + per] = torch.sigmoid(model(v, a, candidates=idx)).detach().float().cpu().numpy()
    return out[inv_w, ks].tolist()


TOWER_BATCH: int = 16
"""Inputs per tower call. Small batches keep a 3D convolution's activations in the CPU's cache:
C3's flow tower costs ~0.43-0.51 ms a window in batches of 8-32 against ~1 ms in batches of
512 (benchmarks/tower_batch.py)."""


def tower(encode: Any, cache: dict, tag: str, keys: np.ndarray, make: Any, batch_size: int) -> torch.Tensor:
    """(N, d) tower features of N inputs through ``cache`` (key (tag, key); key < 0 = never
    cached); ``make(indices)`` builds the tensor of the missing inputs."""
    feats: list[torch.Tensor | None] = [cache.get((tag, int(k))) if k >= 0 else None for k in keys]
    todo = np.array([i for i, f in enumerate(feats) if f is None], np.int64)
    step = min(batch_size, TOWER_BATCH)
    for j in range(0, len(todo), step):
        chunk = todo[j:j + step]
        for i, f in zip(chunk, encode(make(chunk)), strict=True):
            feats[i] = f
            if keys[i] >= 0:
                cache[(tag, int(keys[i]))] = f
    return torch.stack(feats)  # type: ignore[arg-type]


def pairs_towers(model: torch.nn.Module, views: np.ndarray, a_views: np.ndarray, starts: np.ndarray,
                 aq: np.ndarray, ws: np.ndarray, ks: np.ndarray, kind: str, device: torch.device | str,
                 batch_size: int, cache: dict, win_ids: np.ndarray) -> list[float]:
    """``pairs_shared`` for a model with separable towers (``encode_video``, ``encode_audio``,
    ``pair_head``): tower features are cached across calls, the video one by the window's first
    frame id (``win_ids``, -1 = not cacheable: a roll's seam), the audio one by its log-mel row,
    so windows and null rolls of a track encode each video window and audio window once."""
    if len(ws) == 0:
        return []
    uw, inv_w = np.unique(ws, return_inverse=True)
    rows = np.clip(aq[uw], 0, len(a_views) - 1)  # (W', K); out-of-range shifts are never read
    ua, inv = np.unique(rows, return_inverse=True)
    vf = tower(model.encode_video, cache, "v", win_ids[uw], lambda sel: visual_tensor(
        np.ascontiguousarray(views[starts[uw[sel]]]), kind, device), batch_size)
    af = tower(model.encode_audio, cache, "a", ua, lambda sel: torch.from_numpy(
        np.ascontiguousarray(a_views[ua[sel]], dtype=np.float32)).to(device), batch_size)
    idx = torch.from_numpy(inv.reshape(rows.shape).astype(np.int64)).to(device)
    per = max(1, batch_size // rows.shape[1])
    out = np.zeros(rows.shape, np.float64)
    for i in range(0, len(uw), per):
        logit = model.pair_head(vf[i:i + per], af, idx[i:i + per])
        out[i:i + per] = torch.sigmoid(logit).detach().float().cpu().numpy()
    return out[inv_w, ks].tolist()


def batched(model: torch.nn.Module, video: np.ndarray, audio: np.ndarray, kind: str,
            device: torch.device | str, batch_size: int, post: Any, rows_out: bool = False
            ) -> list[Any]:
    """Run ``model(video, audio)`` in batches; a list of floats (or of (K,) rows)."""
    out: list[Any] = []
    for i in range(0, len(video), batch_size):
        v = visual_tensor(np.ascontiguousarray(video[i:i + batch_size]), kind, device)
        a = torch.from_numpy(np.ascontiguousarray(audio[i:i + batch_size], dtype=np.float32)).to(device)
        y = post(model(v, a)).float().cpu().numpy()
        out.extend(list(y) if rows_out else y.tolist())
    return out
