"""Registry of sync methods: ``create_model(name)``, ``available_models()``.

A method scores candidate shifts of the audio against one face track:
``score(inp: SyncInput, shifts_frames) -> (K,) scores`` (higher = more likely). Each method
carries a frozen config dataclass (saved in checkpoints for trained ones).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from avsync.errors import AvsyncError
from avsync.features import AudioFeatures


@dataclass
class SyncInput:
    """What a method sees of one face track.

    frame_times_s: (T,) times of the track's frames on the container clock.
    visual: (T, S) per-frame visual signals (face.mouth.SIGNAL_NAMES columns).
    audio: audio features of the whole file; read them with ``audio_at``.
    neural: the same track as mouth crops, lip landmarks and log-mel for trained methods
    (``avsync.models.neural.NeuralInput``), or None when the analysis kept no crops.
    """

    fps: float
    frame_times_s: np.ndarray
    visual: np.ndarray
    audio: AudioFeatures
    neural: Any = None

    @property
    def n_frames(self) -> int:
        return len(self.frame_times_s)

    def audio_at(self, shift_frames: float, columns: list[int] | None = None) -> np.ndarray:
        """(T, F) audio features at frame times + shift (audio late by ``shift_frames``)."""
        return self.audio.at(self.frame_times_s + shift_frames / self.fps, columns)

    def window(self, start: int, stop: int) -> SyncInput:
        """The frames [start, stop) of this track (audio stays whole, so shifts stay valid)."""
        return SyncInput(self.fps, self.frame_times_s[start:stop], self.visual[start:stop],
                         self.audio, None if self.neural is None else self.neural.window(start, stop))

    def rolled(self, frames: int) -> SyncInput:
        """Visual signals circularly displaced by ``frames``: a null case with unrelated audio."""
        return SyncInput(self.fps, self.frame_times_s, np.roll(self.visual, frames, axis=0),
                         self.audio, None if self.neural is None else self.neural.rolled(frames))


class SyncMethod(Protocol):
    """``needs_neural`` (optional attribute, default False): the method reads ``SyncInput.neural``,
    so the face analysis must keep mouth crops and lip landmarks."""

    name: str

    def score(self, inp: SyncInput, shifts_frames: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class ModelInfo:
    name: str
    kind: str
    description: str
    factory: Callable[[], SyncMethod]


_REGISTRY: dict[str, ModelInfo] = {}
DEFAULT_METHOD = "stacked"  # docs/BENCHMARKS.md "Speaker cross-validation (issue 11, parts 2-3)"


def register_model(name: str, kind: str, description: str) -> Callable:
    """Class/factory decorator adding a method to the registry."""

    def wrap(factory: Callable[[], SyncMethod]) -> Callable[[], SyncMethod]:
        _REGISTRY[name] = ModelInfo(name, kind, description, factory)
        return factory

    return wrap


def _ensure_loaded() -> None:
    from avsync.models import fusion, methods, trained  # noqa: F401  (register the built-in methods)
    from avsync.peers import methods as _peers  # noqa: F401  (syncnet_v2, wav2lip_expert: need --weights)


def available_models() -> list[ModelInfo]:
    _ensure_loaded()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def needs_neural(method: Any) -> bool:
    """True when ``method`` reads mouth crops / lip landmarks (``SyncInput.neural``)."""
    return bool(getattr(method, "needs_neural", False))


def is_neural_name(name: str) -> bool:
    """Whether the method named ``name`` (checked by :func:`check_model`) is a trained model or
    a fusion of them: built, it imports torch and reads neural inputs (``needs_neural``)."""
    _ensure_loaded()
    if name.endswith(".safetensors"):
        return True
    return name in _REGISTRY and _REGISTRY[name].kind in ("trained", "fusion")


def check_model(name: str = DEFAULT_METHOD, weights: str | Path | None = None,
                s3fd_weights: str | Path | None = None) -> None:
    """What :func:`create_model` refuses, without building the model (no torch import): an
    unknown name, weights files given to a method that is not a peer, a missing checkpoint.
    A peer's own weights are checked when it is built."""
    _ensure_loaded()
    if name in _REGISTRY and _REGISTRY[name].kind == "peer":
        return
    if weights is not None or s3fd_weights is not None:
        raise AvsyncError(f"--weights/--s3fd-weights apply only to the peer methods "
                          f"({', '.join(k for k, v in _REGISTRY.items() if v.kind == 'peer')}), not {name!r}")
    if name.endswith(".safetensors"):
        if not Path(name).is_file():
            raise AvsyncError(f"checkpoint not found: {name}")
        return
    if name not in _REGISTRY:
        raise AvsyncError(f"unknown method {name!r}; available: {', '.join(sorted(_REGISTRY))}")


def create_model(name: str = DEFAULT_METHOD, weights: str | Path | None = None,
                 s3fd_weights: str | Path | None = None) -> SyncMethod:
    """Instantiate a registered method by name, or load a ``.safetensors`` checkpoint path.

    weights / s3fd_weights: the user's weights files of the peer methods (kind "peer": syncnet_v2,
    wav2lip_expert; see avsync.peers), which need them; other methods take none."""
    check_model(name, weights, s3fd_weights)
    if name in _REGISTRY and _REGISTRY[name].kind == "peer":
        return _REGISTRY[name].factory(weights=weights, s3fd_weights=s3fd_weights)
    if name.endswith(".safetensors"):
        from avsync.models.scoring import NeuralSyncMethod

        return NeuralSyncMethod.from_checkpoint(name)
    return _REGISTRY[name].factory()
