"""The training-free methods, wrapped for the registry."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from avsync.face.mouth import SIGNAL_NAMES
from avsync.features import AUDIO_NAMES
from avsync.models.classical import correlation_curve, correlation_curves, qmi_curve
from avsync.models.registry import SyncInput, register_model


@dataclass(frozen=True)
class CorrelationConfig:
    """Mouth-opening signals vs the 1-3 kHz band energy, on derivatives and 1-8 Hz band-pass.

    The signal set was chosen on the real dev clips as "every mouth-opening signal"
    (docs/BENCHMARKS.md shows the single-pair and held-out numbers behind it).
    """

    visual: tuple[str, ...] = ("aperture", "inner_area", "outer_height", "outer_area",
                               "jawOpen", "mouth_dark", "flow_mag")
    audio: tuple[str, ...] = ("band_1000_3000",)
    transforms: tuple[str, ...] = ("diff", "band")


@dataclass
class CorrelationMethod:
    config: CorrelationConfig = field(default_factory=CorrelationConfig)
    name: str = "avcorr"

    def thread_copy(self):
        """Itself: it keeps no state between calls (models.threads.thread_copy)."""
        return self

    def score(self, inp: SyncInput, shifts_frames: np.ndarray) -> np.ndarray:
        pairs = [(SIGNAL_NAMES.index(v), j) for v in self.config.visual
                 for j in range(len(self.config.audio))]
        cols = [AUDIO_NAMES.index(a) for a in self.config.audio]
        return correlation_curve(inp.visual, lambda k: inp.audio_at(k, cols), shifts_frames,
                                 inp.fps, pairs, self.config.transforms)

    def score_rolls(self, inp: SyncInput, rolls: np.ndarray, shifts_frames: np.ndarray) -> np.ndarray:
        """(R, K): ``score(inp.rolled(r))`` for each of ``rolls``, the audio side computed once
        (the same numbers as R separate calls)."""
        pairs = [(SIGNAL_NAMES.index(v), j) for v in self.config.visual
                 for j in range(len(self.config.audio))]
        cols = [AUDIO_NAMES.index(a) for a in self.config.audio]
        return correlation_curves([np.roll(inp.visual, int(r), axis=0) for r in rolls],
                                  lambda k: inp.audio_at(k, cols), shifts_frames, inp.fps, pairs,
                                  self.config.transforms)


@dataclass(frozen=True)
class QMIConfig:
    """Liu & Sato's baseline: vertical mouth flow vs audio power (as the WLOS paper uses it)."""

    visual: str = "flow_vy"
    audio: str = "log_energy"
    block_frames: int = 250


@dataclass
class QMIMethod:
    config: QMIConfig = field(default_factory=QMIConfig)
    name: str = "qmi"

    def thread_copy(self):
        """Itself: it keeps no state between calls (models.threads.thread_copy)."""
        return self

    def score(self, inp: SyncInput, shifts_frames: np.ndarray) -> np.ndarray:
        col = AUDIO_NAMES.index(self.config.audio)
        return qmi_curve(inp.visual, lambda k: inp.audio_at(k, [col]), shifts_frames, inp.fps,
                         SIGNAL_NAMES.index(self.config.visual), 0, self.config.block_frames)


register_model("avcorr", "classical",
               "audio-visual correlation of lip signals and 1-3 kHz energy")(
    CorrelationMethod)
register_model("qmi", "classical",
               "quadratic mutual information of mouth flow and audio power (Liu & Sato)")(
    QMIMethod)
