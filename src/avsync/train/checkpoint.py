"""Checkpoints: safetensors weights with everything needed to rebuild the model in the metadata.

Metadata (all values are strings, as safetensors requires):
``method`` (a MODEL_FAMILIES key), ``config`` (JSON of the frozen config dataclass),
``preprocess`` (JSON, ``avsync.models.neural.PREPROCESS``), ``metrics`` (JSON), ``format``
("avsync-neural-1") and, once measured, ``calibration`` (JSON ``{"bias_frames": float, ...}``:
where the model's curve peaks on in-sync clips, applied by ``NeuralSyncMethod.score``; written
by ``benchmarks/bias.py --write``).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from avsync.errors import AvsyncError
from avsync.models.neural import PREPROCESS

FORMAT: str = "avsync-neural-1"

MODEL_FAMILIES: dict[str, tuple[str, str, str]] = {
    "syncnet": ("avsync.models.syncnet", "SyncNetConfig", "SyncNet"),
    "landmark": ("avsync.models.landmark", "LandmarkSyncConfig", "LandmarkSync"),
    "c3": ("avsync.models.wlos", "WLOSConfig", "C3"),
    "wlos": ("avsync.models.wlos", "WLOSConfig", "WLOS"),
    "simmatrix": ("avsync.models.simmatrix", "SimMatrixConfig", "SimMatrixSync"),
    "vocalist": ("avsync.models.vocalist", "VocaLiSTConfig", "VocaLiST"),
}
"""Method name -> (module, config dataclass, model class), imported when first used."""


def family(method: str) -> tuple[type, type[nn.Module]]:
    """(config dataclass, model class) of a neural method."""
    if method not in MODEL_FAMILIES:
        raise AvsyncError(f"unknown neural method {method!r}; known: {', '.join(MODEL_FAMILIES)}")
    module, cfg_name, model_name = MODEL_FAMILIES[method]
    mod = importlib.import_module(module)
    return getattr(mod, cfg_name), getattr(mod, model_name)


def build_model(method: str, config: Any | str = "small") -> nn.Module:
    """A fresh model of ``method`` from a config instance or a preset name ("debug"/"small")."""
    cfg_cls, model_cls = family(method)
    cfg = cfg_cls.preset(config) if isinstance(config, str) else config
    if not isinstance(cfg, cfg_cls):
        raise AvsyncError(f"{method} needs a {cfg_cls.__name__}, got {type(cfg).__name__}")
    return model_cls(cfg)


def config_to_json(config: Any) -> str:
    """JSON of a frozen config dataclass (tuples become lists)."""
    return json.dumps(dataclasses.asdict(config), sort_keys=True)


def config_from_json(cls: type, text: str) -> Any:
    """Rebuild a config dataclass from ``config_to_json``; lists become tuples again.

    Unknown keys (from a newer version) are an error; missing keys take the defaults.
    """
    return config_from_dict(cls, json.loads(text))


def config_from_dict(cls: type, raw: dict[str, Any]) -> Any:
    """``config_from_json`` on an already parsed dict."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(raw) - names
    if unknown:
        raise AvsyncError(f"checkpoint config has unknown fields for {cls.__name__}: {sorted(unknown)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})


def method_of(model: nn.Module) -> str:
    for name, (module, _, model_name) in MODEL_FAMILIES.items():
        if type(model).__module__ == module and type(model).__name__ == model_name:
            return name
    raise AvsyncError(f"{type(model).__name__} is not a known neural model")


def save_checkpoint(path: str | Path, model: nn.Module, metrics: dict[str, Any] | None = None,
                    method: str | None = None, extra: dict[str, Any] | None = None) -> Path:
    """Write the model's weights and metadata to ``path`` (a .safetensors file), atomically.

    ``model`` may be wrapped by DistributedDataParallel. Returns the path written.
    """
    model = getattr(model, "module", model)
    method = method or method_of(model)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "method": method, "config": config_to_json(model.config),
            "preprocess": json.dumps(PREPROCESS, sort_keys=True),
            "metrics": json.dumps(metrics or {}, sort_keys=True, default=float)}
    for k, v in (extra or {}).items():
        meta[k] = v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
    return write_safetensors(path, state, meta)


def write_safetensors(path: str | Path, state: dict[str, torch.Tensor], meta: dict[str, str]) -> Path:
    """Write tensors + string metadata to ``path`` atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def raw_metadata(path: str | Path, fmt: str, what: str) -> dict[str, str]:
    """The string metadata of a safetensors file whose ``format`` is ``fmt``; AvsyncError (one
    line naming ``what`` was expected) for an unreadable file or another format."""
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise AvsyncError(f"{path}: not a readable safetensors checkpoint ({exc})") from exc
    if raw.get("format") != fmt:
        raise AvsyncError(f"{path}: not an avsync {what} checkpoint (format {raw.get('format')!r})")
    return raw


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The checkpoint's metadata with the JSON fields parsed (config stays a dict)."""
    raw = raw_metadata(path, FORMAT, "neural")
    meta: dict[str, Any] = dict(raw)
    for key in ("config", "preprocess", "metrics", "calibration"):
        meta[key] = json.loads(raw.get(key, "{}"))
    return meta


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu"
                    ) -> tuple[nn.Module, Any, dict[str, Any]]:
    """(model in eval mode on ``device``, its frozen config, metadata) from a checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise AvsyncError(f"checkpoint not found: {path}")
    meta = read_metadata(path)
    method = meta["method"]
    if method not in MODEL_FAMILIES:
        raise AvsyncError(f"{path}: unknown method {method!r}")
    differs = {k: v for k, v in meta["preprocess"].items() if k in PREPROCESS and PREPROCESS[k] != v}
    if differs:
        raise AvsyncError(f"{path}: preprocessing {differs} differs from this version's {PREPROCESS}")
    config = config_from_dict(family(method)[0], meta["config"])
    model = build_model(method, config)
    model.load_state_dict(load_file(str(path)))
    model.to(device).eval()
    return model, config, meta
