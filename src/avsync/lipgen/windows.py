"""Training windows of the lip generator: 16 RGB lip frames at 25 fps + their 64 log-mel rows.

Clips of any frame rate are resampled to the generator's 25 fps clock (nearest cached frame);
a window is kept only when every one of its frames was detected (no gap frames) and its audio
rows exist. The identity image of a window is another frame of the same clip (the paper's "one
lip image of the target identity").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from avsync.data.cache import load_clip_cache
from avsync.lipgen.model import AUDIO_ROWS, FRAMES, GEN_FPS, ROWS_PER_FRAME
from avsync.models.neural import standardise_logmel
from avsync.timing import AUDIO_HOP_S


@dataclass
class GenClip:
    """One clip on the 25 fps clock: rgb (T, 64, 64, 3) uint8, lips (T, 40, 2) float32 crop
    pixels, audio (N, n_mels) standardised log-mel, row0 (T,) index of each frame's first audio
    row (4 rows per frame, the frame time between rows 2 and 3), valid (T,) bool."""

    name: str
    speaker: str
    rgb: np.ndarray
    lips: np.ndarray
    audio: np.ndarray
    row0: np.ndarray
    valid: np.ndarray

    def window_starts(self, stride: int = FRAMES // 2) -> np.ndarray:
        """Starts of the usable 16-frame windows, every ``stride`` frames."""
        ok = []
        for s in range(0, len(self.rgb) - FRAMES + 1, stride):
            r = self.row0[s]
            if self.valid[s : s + FRAMES].all() and r >= 0 and r + AUDIO_ROWS <= len(self.audio):
                ok.append(s)
        return np.asarray(ok, np.int64)


def resample_to_clock(frame_times_s: np.ndarray, fps: float = GEN_FPS) -> np.ndarray:
    """Index of the nearest cached frame for each tick of a ``fps`` clock over the clip, (T',)."""
    t = np.asarray(frame_times_s, np.float64)
    ticks = np.arange(t[0], t[-1] + 0.5 / fps, 1.0 / fps)
    idx = np.clip(np.searchsorted(t, ticks), 1, len(t) - 1)
    left = t[idx - 1]
    return np.where(np.abs(ticks - left) <= np.abs(t[idx] - ticks), idx - 1, idx)


def frame_rows(times_s: np.ndarray, audio_start_s: float) -> np.ndarray:
    """First log-mel row of each frame's 4 rows (rows at t-20, -10, 0, +10 ms), (T,) int64."""
    return np.rint((np.asarray(times_s) - audio_start_s) / AUDIO_HOP_S).astype(np.int64) - ROWS_PER_FRAME // 2


def load_gen_clip(path: str | Path) -> GenClip:
    """A generation-cache file (``avsync prepare --for generation``) as a GenClip."""
    d = load_clip_cache(path)
    if "rgb" not in d:
        raise ValueError(f"{path}: not a generation cache file (no 'rgb'; use 'prepare --for generation')")
    idx = resample_to_clock(d["frame_times_s"])
    ticks = d["frame_times_s"][0] + np.arange(len(idx)) / GEN_FPS
    lips = d["lips_px"][idx].astype(np.float32)
    valid = d["valid"][idx] & np.isfinite(lips).all(axis=(1, 2))
    return GenClip(
        Path(path).stem,
        d["speaker"],
        d["rgb"][idx],
        lips,
        standardise_logmel(d["logmel"]),
        frame_rows(ticks, d["audio_start_s"]),
        valid,
    )


def to_video_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(..., T, H, W, 3) uint8 -> (..., 3, T, H, W) float in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(rgb)).float() / 127.5 - 1.0
    return x.movedim(-1, -4)


def to_uint8(video: torch.Tensor) -> np.ndarray:
    """(..., 3, T, H, W) in [-1, 1] -> (..., T, H, W, 3) uint8."""
    x = ((video.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte()
    return x.movedim(-4, -1).cpu().numpy()


class GenWindows:
    """Random (train) or all (eval) windows over GenClips, batched as tensors.

    A batch dict: ``video`` (B, 3, 16, 64, 64), ``audio`` (B, 64, n_mels), ``identity``
    (B, 3, 64, 64), ``lips`` (B, 16, 40, 2) crop pixels, ``wrong_audio`` (B, 64, n_mels) audio
    of another window (another clip when there is one: the discriminator's mismatch pairs).
    """

    def __init__(self, clips: Sequence[GenClip], stride: int = FRAMES // 2) -> None:
        self.clips = list(clips)
        self.index = [(c, int(s)) for c, clip in enumerate(self.clips) for s in clip.window_starts(stride)]

    def __len__(self) -> int:
        return len(self.index)

    def _identity_frame(self, clip: GenClip, start: int, rng: np.random.Generator | None) -> int:
        ok = np.flatnonzero(clip.valid)
        if rng is None:
            return int(ok[0])
        outside = ok[(ok < start) | (ok >= start + FRAMES)]
        return int(rng.choice(outside if len(outside) else ok))

    def items(self, picks: Sequence[int], rng: np.random.Generator | None = None) -> dict[str, torch.Tensor]:
        """The windows ``picks`` (indices into self.index) as one batch."""
        vids, auds, ids, lips, wrong = [], [], [], [], []
        for n, i in enumerate(picks):
            c, s = self.index[i]
            clip = self.clips[c]
            vids.append(clip.rgb[s : s + FRAMES])
            auds.append(clip.audio[clip.row0[s] : clip.row0[s] + AUDIO_ROWS])
            ids.append(clip.rgb[self._identity_frame(clip, s, rng)])
            lips.append(clip.lips[s : s + FRAMES])
            j = self.index[picks[(n + 1) % len(picks)]] if len(picks) > 1 else self.index[(i + 1) % len(self)]
            other = self.clips[j[0]]
            wrong.append(other.audio[other.row0[j[1]] : other.row0[j[1]] + AUDIO_ROWS])
        return {
            "video": to_video_tensor(np.stack(vids)),
            "audio": torch.from_numpy(np.stack(auds)),
            "identity": to_video_tensor(np.stack(ids)[:, None])[:, :, 0],
            "lips": torch.from_numpy(np.stack(lips)),
            "wrong_audio": torch.from_numpy(np.stack(wrong)),
        }

    def sample(self, rng: np.random.Generator, batch_size: int) -> dict[str, torch.Tensor]:
        """A random batch (windows drawn uniformly, random identity frames)."""
        return self.items(rng.integers(0, len(self), batch_size).tolist(), rng)
