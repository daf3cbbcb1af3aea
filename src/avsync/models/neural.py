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

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view

from avsync.errors import AvsyncError
from avsync.models.landmark import lip_features, lip_stats
from avsync.models.syncnet import EmbeddingModel

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

    mouth: (..., 48, 48) uint8 grey -> float standardised; lips: (..., 90) float32 as is.
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

    visual: (T, 48, 48) uint8 (kind "mouth") or (T, 90) float32 (kind "lips");
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
                    audio: np.ndarray | None = None) -> PreparedClip:
        """Preprocess one clip's arrays (see NeuralInput for shapes and units).

        lip_norm: lip feature (mean, std) to use instead of this clip's; audio: the already
        prepared frame-clock audio of this log-mel (skips standardising it again).
        """
        t = len(frame_times_s)
        valid = np.ones(t, bool) if valid is None else np.asarray(valid, bool)
        if kind == "mouth":
            if mouth is None:
                raise AvsyncError("this model needs mouth crops (T, 48, 48)")
            visual = np.ascontiguousarray(mouth, dtype=np.uint8)
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
    def from_input(cls, kind: str, ninp: NeuralInput, audio: np.ndarray | None = None
                   ) -> PreparedClip:
        return cls.from_arrays(kind, ninp.fps, ninp.frame_times_s, ninp.logmel, ninp.audio_start_s,
                               ninp.mouth, ninp.lips, ninp.blend, ninp.valid,
                               lip_norm=ninp.lip_stats, audio=audio)


def valid_window_starts(valid: np.ndarray, frames: int, stride: int = 1) -> np.ndarray:
    """(W,) int64 first frames of the windows of ``frames`` all-valid frames, every ``stride``."""
    if len(valid) < frames:
        return np.zeros(0, np.int64)
    ok = sliding_window_view(np.asarray(valid, bool), frames).all(1)
    starts = np.flatnonzero(ok)
    return starts[starts % max(1, stride) == 0].astype(np.int64)


def _embed(fn: Any, windows: np.ndarray, kind: str | None, device: torch.device | str,
           batch_size: int) -> torch.Tensor:
    out = []
    for i in range(0, len(windows), batch_size):
        chunk = np.ascontiguousarray(windows[i:i + batch_size])
        x = visual_tensor(chunk, kind, device) if kind else torch.from_numpy(chunk).to(device)
        out.append(fn(x).float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


def clip_similarities(model: EmbeddingModel, clip: PreparedClip, shifts_frames: np.ndarray,
                      stride: int = 1, device: torch.device | str = "cpu", batch_size: int = 512,
                      audio_cache: dict[int, torch.Tensor] | None = None,
                      video_cache: dict[int, torch.Tensor] | None = None,
                      frame_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarity of every valid window with the audio at every shift.

    Returns (starts (W,) int64 first frame of each window, sims (W, K) float64 in [-1, 1],
    NaN where the shifted audio leaves the log-mel). Caches of (D,) embeddings are reused
    between calls: ``audio_cache`` by frame-clock row (same audio), ``video_cache`` by the
    first of ``frame_ids`` (same track; only windows of consecutive ids are cached). The model
    runs in eval mode without gradients on ``device`` (it must already be there) and gets
    its mode back.
    """
    frames, rows = model.config.frames, model.config.audio_rows
    rpf = rows // frames
    shifts = np.asarray(shifts_frames, np.int64)
    starts = valid_window_starts(clip.valid, frames, stride)
    sims = np.full((len(starts), len(shifts)), np.nan)
    if len(starts) == 0 or len(clip.audio) < rows:
        return starts, sims
    aq = clip.starts[starts][:, None] + rpf * shifts[None, :]
    ok = (aq >= 0) & (aq + rows <= len(clip.audio))
    cache = {} if audio_cache is None else audio_cache
    uniq = np.unique(aq[ok])
    need = np.array([q for q in uniq if int(q) not in cache], np.int64)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            if len(need):
                a_win = sliding_window_view(clip.audio, rows, axis=0).transpose(0, 2, 1)[need]
                a_emb = _embed(model.embed_audio, a_win.astype(np.float32), None, device, batch_size)
                cache.update({int(q): e for q, e in zip(need, a_emb, strict=True)})
            v_emb = _video_embeddings(model, clip, starts, device, batch_size, video_cache, frame_ids)
    finally:
        model.train(was_training)
    if ok.any():
        a_uniq = torch.stack([cache[int(q)] for q in uniq])
        a_sel = a_uniq[torch.from_numpy(np.searchsorted(uniq, aq[ok]))]
        w_idx = torch.from_numpy(np.nonzero(ok)[0])
        sims[ok] = (v_emb[w_idx] * a_sel).sum(-1).double().numpy()
    return starts, sims


def _video_embeddings(model: EmbeddingModel, clip: PreparedClip, starts: np.ndarray,
                      device: torch.device | str, batch_size: int,
                      cache: dict[int, torch.Tensor] | None, frame_ids: np.ndarray | None
                      ) -> torch.Tensor:
    """(W, D) embeddings of the windows at ``starts``, through ``cache`` keyed by frame id."""
    frames = model.config.frames
    ids = np.arange(len(clip.valid)) if frame_ids is None else np.asarray(frame_ids, np.int64)
    keys = ids[starts]
    cacheable = ids[starts + frames - 1] - keys == frames - 1
    cache = {} if cache is None else cache
    hit = cacheable & np.array([int(k) in cache for k in keys], bool)
    todo = np.flatnonzero(~hit)
    windows = np.moveaxis(sliding_window_view(clip.visual, frames, axis=0), -1, 1)[starts[todo]]
    new = _embed(model.embed_video, windows, clip.kind, device, batch_size)
    rows: list[torch.Tensor | None] = [None] * len(starts)
    for i, e in zip(todo, new, strict=True):
        rows[i] = e
        if cacheable[i]:
            cache[int(keys[i])] = e
    for i in np.flatnonzero(hit):
        rows[i] = cache[int(keys[i])]
    return torch.stack(rows) if rows else torch.zeros(0, model.config.embed_dim)


def syncnet_confidence(dists: np.ndarray) -> float:
    """SyncNet's confidence: median minus minimum of the averaged distance curve.

    dists: (K,) mean distance per shift, or (W, K) per-window distances (averaged over
    windows first). Larger = a sharper, more trustworthy minimum.
    """
    d = np.asarray(dists, np.float64)
    if d.ndim == 2:
        d = np.nanmean(d, axis=0)
    d = d[np.isfinite(d)]
    return float(np.median(d) - np.min(d)) if len(d) else 0.0


@dataclass
class NeuralSyncMethod:
    """A trained embedding model as a sync method (SyncNet's averaged distance curve).

    For each all-valid 5-frame window (every ``stride`` frames) and each candidate shift the
    Euclidean distance between the unit video and audio embeddings is taken; a shift's score is
    minus the mean distance over the windows for which every shift has audio.
    """

    model: EmbeddingModel
    name: str = "syncnet"
    stride: int = 1
    device: str = "cpu"
    batch_size: int = 512
    meta: dict[str, Any] = field(default_factory=dict)
    _audio_source: Any = field(default=None, init=False, repr=False)
    _audio: np.ndarray | None = field(default=None, init=False, repr=False)
    _audio_cache: dict[int, torch.Tensor] = field(default_factory=dict, init=False, repr=False)
    _video_root: Any = field(default=None, init=False, repr=False)
    _video_cache: dict[int, torch.Tensor] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu", stride: int = 1,
                        name: str | None = None) -> NeuralSyncMethod:
        """Load a checkpoint written by ``avsync.train.checkpoint.save_checkpoint``."""
        from avsync.train.checkpoint import load_checkpoint

        model, _, meta = load_checkpoint(path, device=device)
        return cls(model, name=name or meta["method"], stride=stride, device=device, meta=meta)

    @property
    def kind(self) -> str:
        return self.model.visual_kind

    def _prepare(self, ninp: NeuralInput) -> tuple[PreparedClip, dict[int, torch.Tensor]]:
        """The clip in model units, reusing the prepared audio and its embeddings while the
        same log-mel (the same array object) is scored again (windows, null rolls, drift)."""
        key = (ninp.logmel, float(ninp.audio_start_s), float(ninp.fps))
        src = self._audio_source
        if src is None or src[0] is not key[0] or src[1:] != key[1:]:
            self._audio_source, self._audio, self._audio_cache = key, None, {}
        clip = PreparedClip.from_input(self.kind, ninp, audio=self._audio)
        self._audio = clip.audio
        return clip, self._audio_cache

    def window_distances(self, ninp: NeuralInput, shifts_frames: np.ndarray) -> np.ndarray:
        """(W, K) embedding distances in [0, 2] per window and shift (NaN: audio missing).

        Window embeddings are cached per track (``ninp.root``) and audio embeddings per
        log-mel array, so the weights must not change between calls on the same inputs.
        """
        clip, audio_cache = self._prepare(ninp)
        root = ninp.root if ninp.root is not None else ninp
        if self._video_root is not root:
            self._video_root, self._video_cache = root, {}
        _, sims = clip_similarities(self.model, clip, shifts_frames, self.stride, self.device,
                                    self.batch_size, audio_cache, self._video_cache, ninp.ids())
        return np.sqrt(np.clip(2.0 - 2.0 * sims, 0.0, None))

    def distances(self, ninp: NeuralInput, shifts_frames: np.ndarray) -> np.ndarray:
        """(K,) mean distance per shift over windows that have audio at every shift."""
        d = self.window_distances(ninp, shifts_frames)
        if len(d) == 0:
            return np.full(len(shifts_frames), np.nan)
        full = np.isfinite(d).all(1)
        if full.any():
            return d[full].mean(0)
        with warnings.catch_warnings():  # all-NaN columns stay NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(d, axis=0)

    def score_neural(self, ninp: NeuralInput, shifts_frames: np.ndarray) -> np.ndarray:
        """(K,) scores, higher = more likely: minus the mean embedding distance."""
        d = self.distances(ninp, shifts_frames)
        if not np.isfinite(d).any():
            return np.zeros(len(shifts_frames))
        return -np.where(np.isfinite(d), d, np.nanmax(d))

    def confidence(self, ninp: NeuralInput, shifts_frames: np.ndarray) -> float:
        """``syncnet_confidence`` of this input's distance curve."""
        return syncnet_confidence(self.distances(ninp, shifts_frames))

    def score(self, inp: Any, shifts_frames: np.ndarray) -> np.ndarray:
        """Registry protocol. ``inp`` is a NeuralInput, or a SyncInput carrying one as ``.neural``."""
        ninp = inp if isinstance(inp, NeuralInput) else getattr(inp, "neural", None)
        if ninp is None:
            raise AvsyncError(f"method {self.name!r} needs mouth crops / lip landmarks and log-mel "
                              "(a NeuralInput); this input only has the per-frame signals")
        return self.score_neural(ninp, shifts_frames)

