"""Neural sync methods: shared preprocessing and the scorer for trained embedding models.

Time alignment (the same in training and inference). Log-mel rows live on a 10 ms grid whose
row 0 is at ``audio_start_s``. They are resampled once per clip onto the *frame clock*: 4 rows
per video frame, row ``m`` at ``audio_start_s + m / (4 fps)`` (nearest 10 ms row; at 25 fps this
is the grid itself). A 5-frame window starting at frame time ``t`` reads the 20 frame-clock
rows from ``q(t) = round((t - audio_start_s) * 4 fps)``; the candidate "audio late by k
frames" reads them from ``q(t) + 4 k``. So ``offset > 0`` means audio LATE, as everywhere.

Normalisation: log-mel is standardised per clip and band (after flooring 12 nats, about
52 dB, under the band's 99th percentile); mouth crops are ``(x / 255 - 0.5) / 0.25``; lips and
blendshapes are standardised per clip over the valid frames (``landmark.lip_features``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view

from avsync.errors import AvsyncError
from avsync.models.landmark import lip_features, lip_stats

HOP_S: float = 0.01
ROWS_PER_FRAME: int = 4
DYNAMIC_RANGE_NATS: float = 12.0
PREPROCESS: dict[str, Any] = {
    "mouth_size": 48, "n_mels": 40, "hop_s": HOP_S, "frames": 5, "rows_per_frame": ROWS_PER_FRAME,
    "audio_rows": 20, "logmel_norm": "clip_band_z_floor12", "mouth_norm": "(x/255-0.5)/0.25",
    "lips_norm": "clip_z",
}
"""What a checkpoint's model expects (stored in its metadata)."""


def standardise_logmel(logmel: np.ndarray) -> np.ndarray:
    """(N, n_mels) natural-log mel power -> (N, n_mels) float32, zero mean / unit std per band."""
    x = np.nan_to_num(np.asarray(logmel, np.float32), nan=-18.0, posinf=0.0, neginf=-18.0)
    if len(x) == 0:
        return x
    x = np.maximum(x, np.percentile(x, 99, axis=0) - DYNAMIC_RANGE_NATS)
    return ((x - x.mean(0)) / np.maximum(x.std(0), 0.1)).astype(np.float32)


def frame_clock_audio(logmel_z: np.ndarray, audio_start_s: float, fps: float) -> np.ndarray:
    """(N, n_mels) rows on the 10 ms grid -> (M, n_mels) rows at ``audio_start_s + m / (4 fps)``."""
    n = len(logmel_z)
    if n == 0:
        return logmel_z
    rate = ROWS_PER_FRAME * fps  # frame-clock rows per second
    m_count = int(np.floor((n - 1) * HOP_S * rate + 1e-6)) + 1
    rows = np.rint(np.arange(m_count) / rate / HOP_S).astype(np.int64).clip(0, n - 1)
    return np.ascontiguousarray(logmel_z[rows])


def audio_start_rows(frame_times_s: np.ndarray, audio_start_s: float, fps: float) -> np.ndarray:
    """(T,) int64 frame-clock row of each frame time (the first audio row of its window)."""
    t = np.asarray(frame_times_s, np.float64)
    return np.rint((t - audio_start_s) * ROWS_PER_FRAME * fps).astype(np.int64)


def visual_tensor(visual: np.ndarray | torch.Tensor, kind: str, device: torch.device | str
                  ) -> torch.Tensor:
    """Windows of per-frame visual input -> model input on ``device``.

    mouth: (..., 48, 48) uint8 grey -> float standardised; lips: (..., 90) float32 and
    flow: (..., 32, 32) float32 normalised vertical flow, as they are.
    """
    x = torch.as_tensor(visual).to(device)
    if kind == "mouth":
        return (x.float() / 255.0 - 0.5) / 0.25
    return x.float()


@dataclass
class NeuralInput:
    """What a neural method sees of one face track.

    fps: nominal frame rate. frame_times_s: (T,) container-clock times (s).
    mouth: (T, 48, 48) uint8 grey aligned mouth crops (SyncNet) or None.
    lips: (T, 40, 2) identity-normalised lip landmarks, blend: (T, 10) mouth blendshapes
    (landmark model) or None. logmel: (N, 40) natural-log mel power on a 10 ms grid whose row 0
    is at ``audio_start_s`` (s), the whole file's. valid: (T,) bool, None = all valid.
    lip_stats: lip feature (mean, std) of the whole track (set on windows of it).
    frame_ids: (T,) int index of each frame in the track this input was cut or rolled from
    (None = 0..T-1), and root: that track's input; together they let a scorer reuse window
    embeddings across windows and null rolls of one track.
    """

    fps: float
    frame_times_s: np.ndarray
    mouth: np.ndarray | None
    lips: np.ndarray | None
    blend: np.ndarray | None
    logmel: np.ndarray
    audio_start_s: float
    valid: np.ndarray | None = None
    lip_stats: tuple[np.ndarray, np.ndarray] | None = None
    frame_ids: np.ndarray | None = None
    root: Any = field(default=None, repr=False, compare=False)

    @property
    def n_frames(self) -> int:
        return len(self.frame_times_s)

    def _derived(self, **arrays: np.ndarray | None) -> NeuralInput:
        stats = self.lip_stats
        if stats is None and self.lips is not None and self.blend is not None:
            stats = lip_stats(self.lips, self.blend, self._valid())  # the whole track's
        return NeuralInput(self.fps, arrays.pop("frame_times_s"), logmel=self.logmel,
                           audio_start_s=self.audio_start_s, lip_stats=stats,
                           root=self.root if self.root is not None else self, **arrays)

    def ids(self) -> np.ndarray:
        """(T,) int64 frame_ids (0..T-1 when unset)."""
        return np.arange(self.n_frames) if self.frame_ids is None else np.asarray(self.frame_ids, np.int64)

    def _valid(self) -> np.ndarray:
        return np.ones(self.n_frames, bool) if self.valid is None else np.asarray(self.valid, bool)

    def _frame_arrays(self) -> dict[str, np.ndarray | None]:
        return {"mouth": self.mouth, "lips": self.lips, "blend": self.blend, "valid": self._valid(),
                "frame_ids": self.ids()}

    def window(self, start: int, stop: int) -> NeuralInput:
        """Frames [start, stop); the log-mel and the lip statistics stay the whole track's."""
        arrays = {k: None if v is None else v[start:stop] for k, v in self._frame_arrays().items()}
        return self._derived(frame_times_s=self.frame_times_s[start:stop], **arrays)

    def rolled(self, frames: int) -> NeuralInput:
        """Visual inputs circularly displaced by ``frames`` (a null case, unrelated audio)."""
        arrays = {k: None if v is None else np.roll(v, frames, axis=0)
                  for k, v in self._frame_arrays().items()}
        return self._derived(frame_times_s=self.frame_times_s, **arrays)


@dataclass
class PreparedClip:
    """One clip in model units.

    visual: (T, 48, 48) uint8 (kind "mouth"), (T, 90) float32 (kind "lips") or (T, 32, 32)
    float32 normalised vertical lip flow (kind "flow", frame t = motion from t-1 to t, so frame
    0 and frames after a gap are invalid);
    valid: (T,) bool; audio: (M, 40) float32 standardised log-mel on the frame clock;
    starts: (T,) int64 frame-clock audio row of each frame.
    """

    kind: str
    fps: float
    visual: np.ndarray
    valid: np.ndarray
    audio: np.ndarray
    starts: np.ndarray
    name: str = ""

    @classmethod
    def from_arrays(cls, kind: str, fps: float, frame_times_s: np.ndarray, logmel: np.ndarray,
                    audio_start_s: float, mouth: np.ndarray | None = None,
                    lips: np.ndarray | None = None, blend: np.ndarray | None = None,
                    valid: np.ndarray | None = None, name: str = "",
                    lip_norm: tuple[np.ndarray, np.ndarray] | None = None,
                    audio: np.ndarray | None = None, flow: np.ndarray | None = None) -> PreparedClip:
        """Preprocess one clip's arrays (see NeuralInput for shapes and units).

        lip_norm: lip feature (mean, std) to use instead of this clip's; audio: the already
        prepared frame-clock audio of this log-mel (skips standardising it again); flow: the
        already computed normalised lip flow of these crops (kind "flow"; skips Farneback).
        """
        t = len(frame_times_s)
        valid = np.ones(t, bool) if valid is None else np.asarray(valid, bool)
        if kind == "mouth":
            if mouth is None:
                raise AvsyncError("this model needs mouth crops (T, 48, 48)")
            visual = np.ascontiguousarray(mouth, dtype=np.uint8)
        elif kind == "flow":
            if mouth is None:
                raise AvsyncError("this model needs mouth crops (T, 48, 48) to compute lip flow")
            from avsync.face.flow import flow_valid, lip_flow

            visual = lip_flow(mouth) if flow is None else flow
            valid = valid & flow_valid(valid)
        elif kind == "lips":
            if lips is None or blend is None:
                raise AvsyncError("this model needs lip landmarks (T, 40, 2) and blendshapes (T, 10)")
            visual = lip_features(lips, blend, valid, lip_norm)
        else:
            raise AvsyncError(f"unknown visual input kind {kind!r}")
        if audio is None:
            audio = frame_clock_audio(standardise_logmel(logmel), audio_start_s, fps)
        return cls(kind, float(fps), visual, valid, audio,
                   audio_start_rows(frame_times_s, audio_start_s, fps), name)

    @classmethod
    def from_input(cls, kind: str, ninp: NeuralInput, audio: np.ndarray | None = None,
                   flow: np.ndarray | None = None) -> PreparedClip:
        return cls.from_arrays(kind, ninp.fps, ninp.frame_times_s, ninp.logmel, ninp.audio_start_s,
                               ninp.mouth, ninp.lips, ninp.blend, ninp.valid,
                               lip_norm=ninp.lip_stats, audio=audio, flow=flow)


def valid_window_starts(valid: np.ndarray, frames: int, stride: int = 1) -> np.ndarray:
    """(W,) int64 first frames of the windows of ``frames`` all-valid frames, every ``stride``
    counted from the first valid window (so a short input whose first frame is invalid, as the
    first lip-flow frame always is, still gets a window)."""
    if len(valid) < frames:
        return np.zeros(0, np.int64)
    ok = sliding_window_view(np.asarray(valid, bool), frames).all(1)
    starts = np.flatnonzero(ok)
    if len(starts) == 0:
        return starts.astype(np.int64)
    return starts[(starts - starts[0]) % max(1, stride) == 0].astype(np.int64)
