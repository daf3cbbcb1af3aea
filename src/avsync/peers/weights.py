"""Loading the user's published weights files into the ports, with one-line errors.

Accepted layouts (all as ``torch.save`` writes them, read with ``torch.load(weights_only=True)``):
a bare state dict (syncnet_v2.model, sfd_face.pth), or a training checkpoint with a
``state_dict`` entry (lipsync_expert.pth); ``module.`` (DataParallel) and ``__S__.``
(SyncNetInstance) key prefixes are stripped. BatchNorm ``num_batches_tracked`` counters may be
absent (old PyTorch); every other key must be present with the port's shape.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn

from avsync.errors import AvsyncError

_PREFIXES = ("module.", "__S__.")


def _plain(obj: object) -> dict[str, torch.Tensor] | None:
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(k, str) for k in obj):
        return None
    out = {}
    for key, value in obj.items():
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def read_state_dict(path: str | os.PathLike[str], what: str) -> dict[str, torch.Tensor]:
    """The tensors of a weights file; ``what`` names the expected file in the error messages."""
    p = Path(path)
    if not p.is_file():
        raise AvsyncError(f"{what} weights not found: {p}")
    try:
        with warnings.catch_warnings():  # torch's pickle-protocol notes would break the one-line error
            warnings.simplefilter("ignore")
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (corrupt, truncated, not torch, or not weights-only)
        text = str(exc).strip().splitlines()[0].split(". ")[0][:100] if str(exc).strip() else ""
        raise AvsyncError(f"{p}: not a readable PyTorch weights file for {what} "
                          f"({type(exc).__name__}{': ' + text if len(text) > 8 else ''})") from None
    state = _plain(obj)
    if state is None:
        raise AvsyncError(f"{p}: holds no state dict (expected {what})")
    return state


def load_into(model: nn.Module, path: str | os.PathLike[str], what: str) -> nn.Module:
    """Fill ``model`` from the weights file at ``path`` and put it in eval mode.

    Raises AvsyncError (one line) on a missing, unreadable or mismatched file.
    """
    state = read_state_dict(path, what)
    own = model.state_dict()
    needed = [k for k in own if not k.endswith("num_batches_tracked")]
    missing = [k for k in needed if k not in state]
    if missing:
        raise AvsyncError(f"{path}: not {what}: {len(missing)} of {len(needed)} expected tensors are "
                          f"missing (first: {missing[0]})")
    unexpected = [k for k in state if k not in own]
    if unexpected:
        raise AvsyncError(f"{path}: not {what}: {len(unexpected)} unexpected tensors "
                          f"(first: {unexpected[0]})")
    for key, value in state.items():
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != tuple(own[key].shape):
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise AvsyncError(f"{path}: not {what}: {key} has shape {shape}, expected "
                              f"{tuple(own[key].shape)}")
    model.load_state_dict(state, strict=False)
    return model.eval()
