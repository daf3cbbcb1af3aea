"""Scoring a face track with a trained model: per-window scores over candidate shifts.

Four kinds of model output (``model.output``), one score table (W windows x K shifts, higher =
more likely, NaN where the shifted audio leaves the recording):

* ``embedding`` (SyncNet, landmark): minus the distance of the unit video and audio embeddings;
  embeddings are cached per track frame / audio row, so null rolls and drift windows are cheap.
* ``pair`` (C3, VocaLiST): the probability that window and shifted audio are in sync
  (sigmoid of the logit; averaging probabilities over windows is VocaLiST's score averaging).
* ``offsets`` (similarity-matrix classifier): log-softmax over the model's own candidate
  shifts, read off for the requested ones (outside the model's range: unavailable).
* ``regression`` (WLOS): one prediction ``p`` per window from the audio at the window's own
  time; the score of shift ``k`` is ``-|k - p|`` (its window average peaks at the median).

Pair, offsets and regression outputs are cached by (first track frame id, audio row).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view

from avsync.errors import AvsyncError
from avsync.models.calibration import calibrated_scores
from avsync.models.neural import NeuralInput, PreparedClip, valid_window_starts, visual_tensor
from avsync.models.pair_scoring import batched, pairs_shared, pairs_towers, shares_candidates
from avsync.models.score_cache import RowMemo, cached_outputs, cached_scalars, root_windows
from avsync.models.syncnet import EmbeddingModel
from avsync.models.threads import SCORING_THREADS, torch_threads

OUTPUT_KINDS: tuple[str, ...] = ("embedding", "pair", "offsets", "regression")

DEFAULT_STRIDE: dict[str, int] = {"embedding": 1, "pair": 4, "offsets": 1, "regression": 1}
"""Window spacing (frames) when scoring a track: a pair model runs once per window AND shift
(31x the work of the others), so it looks at every 4th window (5- and 10-frame windows still
cover every frame)."""


def _embed(fn: Any, windows: np.ndarray, kind: str | None, device: torch.device | str,
           batch_size: int) -> torch.Tensor:
    out = []
    for i in range(0, len(windows), batch_size):
        chunk = np.ascontiguousarray(windows[i:i + batch_size])
        x = visual_tensor(chunk, kind, device) if kind else torch.from_numpy(chunk).to(device)
        out.append(fn(x).float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


def _window_grid(model: torch.nn.Module, clip: PreparedClip, shifts_frames: np.ndarray, stride: int
                 ) -> tuple[int, int, int, np.ndarray, np.ndarray, np.ndarray]:
    """(frames, audio rows, rows per frame, shifts (K,), window starts (W,), NaN table (W, K))."""
    frames, rows = model.config.frames, model.config.audio_rows
    shifts = np.asarray(shifts_frames, np.int64)
    starts = valid_window_starts(clip.valid, frames, stride)
    return frames, rows, rows // frames, shifts, starts, np.full((len(starts), len(shifts)), np.nan)


def clip_similarities(model: EmbeddingModel, clip: PreparedClip, shifts_frames: np.ndarray,
                      stride: int = 1, device: torch.device | str = "cpu", batch_size: int = 512,
                      audio_cache: RowMemo | None = None,
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
    frames, rows, rpf, shifts, starts, sims = _window_grid(model, clip, shifts_frames, stride)
    if len(starts) == 0 or len(clip.audio) < rows:
        return starts, sims
    aq = clip.starts[starts][:, None] + rpf * shifts[None, :]
    ok = (aq >= 0) & (aq + rows <= len(clip.audio))
    cache = RowMemo() if audio_cache is None else audio_cache
    uniq = np.unique(aq[ok]).astype(np.int64)
    need = cache.missing(uniq)
    was_training = model.training
    if was_training:  # eval() walks every submodule: only when needed (hundreds of calls a track)
        model.eval()
    try:
        with torch.no_grad():
            if len(need):
                a_win = sliding_window_view(clip.audio, rows, axis=0).transpose(0, 2, 1)[need]
                a_emb = _embed(model.embed_audio, a_win.astype(np.float32), None, device, batch_size)
                cache.put(need, a_emb)
            v_emb = _video_embeddings(model, clip, starts, device, batch_size, video_cache, frame_ids)
    finally:
        if was_training:
            model.train(True)
    if ok.any():
        a_sel = cache.get(aq[ok].astype(np.int64))
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
    cacheable = root_windows(ids, starts, frames, clip.kind)
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




def _windows(clip: PreparedClip, frames: int) -> np.ndarray:
    """(T - frames + 1, frames, ...) view of the visual frames of every window start."""
    return np.moveaxis(sliding_window_view(clip.visual, frames, axis=0), -1, 1)


def model_window_scores(model: torch.nn.Module, clip: PreparedClip, shifts_frames: np.ndarray,
                        stride: int = 1, device: torch.device | str = "cpu", batch_size: int = 512,
                        cache: dict | None = None, frame_ids: np.ndarray | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
    """(starts (W,), scores (W, K)) of a pair / offsets / regression model (see module doc).

    cache: outputs keyed by (frame id of the window's first frame, audio row); only windows
    of consecutive ids are cached, so the model and the audio must not change between calls
    that share it.
    """
    cfg = model.config
    frames, rows, rpf, shifts, starts, scores = _window_grid(model, clip, shifts_frames, stride)
    if len(starts) == 0 or len(clip.audio) < rows:
        return starts, scores
    ids = np.arange(len(clip.valid)) if frame_ids is None else np.asarray(frame_ids, np.int64)
    consecutive = root_windows(ids, starts, frames, clip.kind)
    q = clip.starts[starts]
    cache = {} if cache is None else cache
    views = _windows(clip, frames)
    a_views = sliding_window_view(clip.audio, rows, axis=0).transpose(0, 2, 1)
    kind = model.output
    was_training = model.training
    if was_training:
        model.eval()
    try:
        with torch.no_grad():
            if kind == "pair":
                aq = q[:, None] + rpf * shifts[None, :]
                ok = (aq >= 0) & (aq + rows <= len(clip.audio))
                w_idx, k_idx = np.nonzero(ok)
                keys = (ids[starts[w_idx]].astype(np.int64) << 32) | aq[w_idx, k_idx].astype(np.int64)

                def run_pairs(sel: np.ndarray) -> list[float]:
                    if hasattr(model, "pair_head"):
                        win_ids = np.where(consecutive, ids[starts], -1)
                        return pairs_towers(model, views, a_views, starts, aq, w_idx[sel], k_idx[sel],
                                            clip.kind, device, batch_size, cache, win_ids)
                    if shares_candidates(model):
                        return pairs_shared(model, views, a_views, starts, aq, w_idx[sel], k_idx[sel],
                                            clip.kind, device, batch_size)
                    return batched(model, views[starts[w_idx[sel]]], a_views[aq[w_idx[sel], k_idx[sel]]],
                                   clip.kind, device, batch_size, torch.sigmoid)

                scores[w_idx, k_idx] = cached_scalars(keys, consecutive[w_idx], cache, run_pairs)
            elif kind == "regression":
                ok = (q >= 0) & (q + rows <= len(clip.audio))
                w_idx = np.flatnonzero(ok)
                keys = [(int(ids[starts[w]]), int(q[w])) for w in w_idx]

                def run_reg(sel: np.ndarray) -> list[float]:
                    return batched(model, views[starts[w_idx[sel]]], a_views[q[w_idx[sel]]],
                                   clip.kind, device, batch_size, lambda x: x)

                preds = np.asarray(cached_outputs(keys, consecutive[w_idx], cache, run_reg), np.float64)
                lim = float(getattr(cfg, "max_offset", np.inf))
                scores[w_idx] = -np.abs(shifts[None, :] - np.clip(preds, -lim, lim)[:, None])
            elif kind == "offsets":
                s_max = cfg.max_shift
                span = rows + 2 * rpf * s_max
                q0 = q - rpf * s_max
                ok = (q0 >= 0) & (q0 + span <= len(clip.audio))
                w_idx = np.flatnonzero(ok)
                keys = [(int(ids[starts[w]]), int(q[w])) for w in w_idx]
                s_views = sliding_window_view(clip.audio, span, axis=0).transpose(0, 2, 1)

                def run_offsets(sel: np.ndarray) -> list[np.ndarray]:
                    return batched(model, views[starts[w_idx[sel]]], s_views[q0[w_idx[sel]]],
                                   clip.kind, device, batch_size,
                                   lambda x: torch.log_softmax(x, dim=-1), rows_out=True)

                out = cached_outputs(keys, consecutive[w_idx], cache, run_offsets)
                inside = np.abs(shifts) <= s_max
                if len(w_idx):
                    table = np.stack(out).astype(np.float64)  # (W', 2S+1)
                    scores[np.ix_(w_idx, np.flatnonzero(inside))] = table[:, shifts[inside] + s_max]
            else:
                raise AvsyncError(f"unknown model output {kind!r}")
    finally:
        if was_training:
            model.train(True)
    return starts, scores


def window_scores(model: torch.nn.Module, clip: PreparedClip, shifts_frames: np.ndarray,
                  stride: int = 1, device: torch.device | str = "cpu", batch_size: int = 512,
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(starts (W,), scores (W, K)) of any neural model, higher = more likely (no caches)."""
    if getattr(model, "output", "embedding") == "embedding":
        starts, sims = clip_similarities(model, clip, shifts_frames, stride, device, batch_size)
        return starts, -np.sqrt(np.clip(2.0 - 2.0 * sims, 0.0, None))
    return model_window_scores(model, clip, shifts_frames, stride, device, batch_size)


@dataclass
class NeuralSyncMethod:
    """A trained model as a sync method: window scores averaged over a track.

    For each all-valid window (every ``stride`` frames) and each candidate shift the model
    gives a score (see the module doc); a shift's score is the mean over the windows for which
    every shift has audio. Embedding models keep SyncNet's view: the score is minus the mean
    embedding distance, and ``confidence`` is SyncNet's median - min of that distance curve.

    bias_frames: where the model's curve peaks on in-sync clips (frames); ``score`` reads the
    curve that far away so its zero is the established corpora's (``models.calibration``).
    None: the checkpoint's ``calibration`` metadata (0 when it has none).
    """

    needs_neural = True  # reads SyncInput.neural (mouth crops, lip landmarks, log-mel)

    model: torch.nn.Module
    name: str = "syncnet"
    stride: int = 1
    device: str = "cpu"
    batch_size: int = 512
    meta: dict[str, Any] = field(default_factory=dict)
    bias_frames: float | None = None
    _audio_source: Any = field(default=None, init=False, repr=False)
    _audio: np.ndarray | None = field(default=None, init=False, repr=False)
    _audio_cache: RowMemo = field(default_factory=RowMemo, init=False, repr=False)
    _video_root: Any = field(default=None, init=False, repr=False)
    _video_cache: dict[int, torch.Tensor] = field(default_factory=dict, init=False, repr=False)
    _root_flow: np.ndarray | None = field(default=None, init=False, repr=False)
    _out_cache: dict = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu", stride: int | None = None,
                        name: str | None = None) -> NeuralSyncMethod:
        """Load a checkpoint written by ``avsync.train.checkpoint.save_checkpoint``.

        stride: window spacing in frames; default DEFAULT_STRIDE of the model's output kind.
        """
        from avsync.train.checkpoint import load_checkpoint

        model, _, meta = load_checkpoint(path, device=device)
        if stride is None:
            stride = DEFAULT_STRIDE.get(getattr(model, "output", "embedding"), 1)
        return cls(model, name=name or meta["method"], stride=stride, device=device, meta=meta)

    @property
    def kind(self) -> str:
        return self.model.visual_kind

    def thread_copy(self) -> NeuralSyncMethod:
        """The same model and settings with empty caches, for scoring another track on another
        thread (models.threads.thread_copy); the torch module is shared (inference only)."""
        return replace(self)

    def warm_copy(self) -> NeuralSyncMethod:
        """A copy for another thread that starts with a snapshot of this method's caches (the
        audio, the track's lip flow, tower features and outputs so far): it then scores more
        inputs of the same track without redoing that work, while this one goes on
        (models.fusion: a segment's drift windows beside its null rolls). Cached values are
        shared read-only; what either computes afterwards stays its own."""
        c = replace(self)
        c._audio_source, c._audio, c._audio_cache = self._audio_source, self._audio, self._audio_cache.copy()
        c._video_root, c._video_cache = self._video_root, dict(self._video_cache)
        c._root_flow, c._out_cache = self._root_flow, dict(self._out_cache)
        return c

    @property
    def calibration_frames(self) -> float:
        """The zero calibration ``score`` applies (frames; see bias_frames)."""
        if self.bias_frames is not None:
            return float(self.bias_frames)
        return float((self.meta.get("calibration") or {}).get("bias_frames", 0.0))

    @property
    def output(self) -> str:
        return getattr(self.model, "output", "embedding")

    @property
    def min_frames(self) -> int:
        """Shortest input (frames) that holds one window: the model's frames, plus the first
        lip-flow frame, which has no motion yet (kind "flow")."""
        return int(self.model.config.frames) + (self.kind == "flow")

    def _prepare(self, ninp: NeuralInput) -> PreparedClip:
        """The clip in model units, reusing the prepared audio and the caches while the same
        log-mel (the same array object) and the same track (``root``) are scored again."""
        key = (ninp.logmel, float(ninp.audio_start_s), float(ninp.fps))
        src = self._audio_source
        root = ninp.root if ninp.root is not None else ninp
        if src is None or src[0] is not key[0] or src[1:] != key[1:]:
            self._audio_source, self._audio, self._audio_cache = key, None, RowMemo()
            self._out_cache = {}
        if self._video_root is not root:
            self._video_root, self._video_cache, self._out_cache = root, {}, {}
            self._root_flow = None
        flow = None
        if self.kind == "flow" and ninp.mouth is not None and root.mouth is not None:
            from avsync.face.flow import lip_flow, reuse_flow  # cv2: not at import time

            if self._root_flow is None:  # the track's flow once; windows and null rolls reuse it
                self._root_flow = lip_flow(root.mouth)
            flow = reuse_flow(self._root_flow, ninp.ids(), ninp.mouth)
        clip = PreparedClip.from_input(self.kind, ninp, audio=self._audio, flow=flow)
        self._audio = clip.audio
        return clip

    def window_distances(self, ninp: NeuralInput, shifts_frames: np.ndarray) -> np.ndarray:
        """(W, K) embedding distances in [0, 2] per window and shift (embedding models only)."""
        if self.output != "embedding":
            raise AvsyncError(f"method {self.name!r} has no embedding distances")
        clip = self._prepare(ninp)
        _, sims = clip_similarities(self.model, clip, shifts_frames, self.stride, self.device,
                                    self.batch_size, self._audio_cache, self._video_cache, ninp.ids())
        return np.sqrt(np.clip(2.0 - 2.0 * sims, 0.0, None))

    def window_scores(self, ninp: NeuralInput, shifts_frames: np.ndarray) -> np.ndarray:
        """(W, K) scores per window and shift, higher = more likely (NaN: audio missing)."""
        if self.output == "embedding":
            return -self.window_distances(ninp, shifts_frames)
        clip = self._prepare(ninp)
        _, scores = model_window_scores(self.model, clip, shifts_frames, self.stride, self.device,
                                        self.batch_size, self._out_cache, ninp.ids())
        return scores

    def mean_scores(self, ninp: NeuralInput, shifts_frames: np.ndarray) -> np.ndarray:
        """(K,) mean score per shift over windows that have audio at every shift."""
        s = self.window_scores(ninp, shifts_frames)
        if len(s) == 0:
            return np.full(len(shifts_frames), np.nan)
        full = np.isfinite(s).all(1)
        if full.any():
            return s[full].mean(0)
        with warnings.catch_warnings():  # all-NaN columns stay NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(s, axis=0)

    def distances(self, ninp: NeuralInput, shifts_frames: np.ndarray) -> np.ndarray:
        """(K,) mean embedding distance per shift (embedding models)."""
        return -self.mean_scores(ninp, shifts_frames)

    def score_neural(self, ninp: NeuralInput, shifts_frames: np.ndarray) -> np.ndarray:
        """(K,) scores, higher = more likely; shifts without any score get the lowest one."""
        s = self.mean_scores(ninp, shifts_frames)
        if not np.isfinite(s).any():
            return np.zeros(len(shifts_frames))
        return np.where(np.isfinite(s), s, np.nanmin(s))

    def confidence(self, ninp: NeuralInput, shifts_frames: np.ndarray) -> float:
        """Peak minus median of the mean score curve (SyncNet's median - min distance)."""
        s = self.mean_scores(ninp, shifts_frames)
        s = s[np.isfinite(s)]
        return float(np.max(s) - np.median(s)) if len(s) else 0.0

    def score(self, inp: Any, shifts_frames: np.ndarray) -> np.ndarray:
        """Registry protocol: the calibrated (K,) curve (``calibration_frames`` applied).
        ``inp`` is a NeuralInput, or a SyncInput carrying one as ``.neural``."""
        ninp = inp if isinstance(inp, NeuralInput) else getattr(inp, "neural", None)
        if ninp is None:
            raise AvsyncError(f"method {self.name!r} needs mouth crops / lip landmarks and log-mel "
                              "(a NeuralInput); this input only has the per-frame signals")
        with torch_threads(SCORING_THREADS):
            return calibrated_scores(lambda s: self.score_neural(ninp, s), shifts_frames,
                                     self.calibration_frames)
