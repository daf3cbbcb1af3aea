"""Checkpoints of the lip generator: several networks in one safetensors file.

Tensor names are ``<net>.<parameter>``; the metadata (strings, as safetensors requires) holds
``format`` ("avsync-gen-1"), ``nets`` (JSON: net name -> {"class", "config"}), ``preprocess``
(JSON, GEN_PREPROCESS) and ``metrics`` (JSON). A bundle shipped for ``avsync generate`` holds
``generator`` plus ``landmarks`` and ``flow`` (used by the metrics).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from avsync.errors import AvsyncError
from avsync.lipgen.critics import (
    CorrelationNets,
    CriticConfig,
    LipFlowNet,
    LipLandmarkNet,
    ThreeStreamDiscriminator,
    VideoAutoencoder,
)
from avsync.lipgen.model import AUDIO_ROWS, FRAMES, GEN_FPS, IMAGE_SIZE, GeneratorConfig, LipGenerator
from avsync.train.checkpoint import config_from_dict, config_to_json, raw_metadata, write_safetensors

GEN_FORMAT: str = "avsync-gen-1"

GEN_PREPROCESS: dict[str, Any] = {
    "fps": GEN_FPS,
    "frames": FRAMES,
    "audio_rows": AUDIO_ROWS,
    "n_mels": 40,
    "hop_s": 0.01,
    "logmel_norm": "clip_band_z_floor12",
    "image_size": IMAGE_SIZE,
    "image_norm": "x/127.5-1",
    "crop": "mouth_affine: outer lip corners level, mouth = half the crop width, centred",
}

NET_CLASSES: dict[str, tuple[type, type[nn.Module]]] = {
    "LipGenerator": (GeneratorConfig, LipGenerator),
    "LipFlowNet": (CriticConfig, LipFlowNet),
    "LipLandmarkNet": (CriticConfig, LipLandmarkNet),
    "CorrelationNets": (CriticConfig, CorrelationNets),
    "VideoAutoencoder": (CriticConfig, VideoAutoencoder),
    "ThreeStreamDiscriminator": (CriticConfig, ThreeStreamDiscriminator),
}


def save_bundle(
    path: str | Path, nets: dict[str, nn.Module], metrics: dict[str, Any] | None = None, half: bool = False
) -> Path:
    """Write ``nets`` (name -> module with a ``config``) to ``path`` atomically; ``half`` stores
    float tensors as float16 (loaded back as float32)."""
    state, described = {}, {}
    for name, net in nets.items():
        cls = type(net).__name__
        if cls not in NET_CLASSES:
            raise AvsyncError(f"{cls} cannot be saved in a generation bundle")
        described[name] = {"class": cls, "config": json.loads(config_to_json(net.config))}
        for k, v in net.state_dict().items():
            v = v.detach().cpu().contiguous()
            state[f"{name}.{k}"] = v.half() if half and v.is_floating_point() else v
    meta = {
        "format": GEN_FORMAT,
        "nets": json.dumps(described, sort_keys=True),
        "preprocess": json.dumps(GEN_PREPROCESS, sort_keys=True),
        "metrics": json.dumps(metrics or {}, sort_keys=True, default=float),
    }
    return write_safetensors(path, state, meta)


def bundle_metadata(path: str | Path) -> dict[str, Any]:
    """Parsed metadata of a bundle; AvsyncError when it is not one."""
    raw = raw_metadata(path, GEN_FORMAT, "generator")
    return {k: json.loads(raw.get(k, "{}")) for k in ("nets", "preprocess", "metrics")}


def load_bundle(
    path: str | Path, names: tuple[str, ...] | None = None
) -> tuple[dict[str, nn.Module], dict[str, Any]]:
    """({name: module in eval mode (float32, CPU)}, metadata) for the nets in ``names`` (all
    when None)."""
    path = Path(path)
    if not path.is_file():
        raise AvsyncError(f"generator checkpoint not found: {path}")
    meta = bundle_metadata(path)
    differs = {k: v for k, v in meta["preprocess"].items() if GEN_PREPROCESS.get(k, v) != v}
    if differs:
        raise AvsyncError(f"{path}: preprocessing {differs} differs from this version's")
    tensors = load_file(str(path))
    out = {}
    for name, desc in meta["nets"].items():
        if names is not None and name not in names:
            continue
        cfg_cls, net_cls = NET_CLASSES[desc["class"]]
        net = net_cls(config_from_dict(cfg_cls, desc["config"]))
        prefix = name + "."
        net.load_state_dict(
            {
                k[len(prefix) :]: v.float() if v.is_floating_point() else v
                for k, v in tensors.items()
                if k.startswith(prefix)
            }
        )
        out[name] = net.eval()
    missing = set(names or ()) - set(out)
    if missing:
        raise AvsyncError(f"{path}: no {', '.join(sorted(missing))} in this checkpoint")
    return out, meta


def to_device(nets: dict[str, nn.Module], device: str | torch.device) -> dict[str, nn.Module]:
    return {k: v.to(device) for k, v in nets.items()}
