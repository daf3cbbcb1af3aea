"""Training tasks: window sampling from the cache, augmentation, losses, offset accuracy.

Perfect Match (Chung et al. 2019): for a valid 5-frame window the candidates are the 20-row
audio windows at shifts k = -15..15 frames (k = 0, index 15, is the positive). Shifts with
0 < |k| <= 1 are masked out of the softmax (a 1-frame shift is still "in sync" to a viewer),
so the positive competes with the 28 shifts |k| >= 2. logits = cosine * logit_scale (1 / T,
learned from T = 0.07). The "bce" / "contrastive" options score one pair at a time (positive
or a random |k| >= 2 shift, 50/50); with BCE on (cos + 1) / 2 the loss starts at ln 2 = 0.693
and tends to stay there for a long time on speech, the trap Perfect Match avoids.

Windows whose audio is quiet (mean standardised log-mel under the clip's ``quiet_percentile``)
carry ``quiet_weight`` in the loss: there is nothing to sync there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from avsync.models.neural import PreparedClip, valid_window_starts, visual_tensor
from avsync.models.syncnet import AUDIO_ROWS, FRAMES, ROWS_PER_FRAME, EmbeddingModel
from avsync.train.augment import AugmentConfig, augment_audio, augment_visual

LOSSES: tuple[str, ...] = ("auto", "pm", "bce", "contrastive", "ce", "huber")

DEFAULT_LOSS: dict[str, str] = {"embedding": "pm", "pair": "pm", "offsets": "ce", "regression": "huber"}
"""The loss ``auto`` stands for, by model output kind (see ``avsync.models.scoring``). The pair
classifiers' papers use BCE on single pairs (``--loss bce``); on our data it sat at ln 2, the
multi-way loss over every shift trains them (docs/BENCHMARKS.md), so ``auto`` is "pm" for them."""

ALLOWED_LOSSES: dict[str, tuple[str, ...]] = {
    "embedding": ("pm", "bce", "contrastive"), "pair": ("bce", "pm"), "offsets": ("ce",),
    "regression": ("huber",)}


@dataclass(frozen=True)
class TaskConfig:
    """loss: "auto" (the model's usual loss, DEFAULT_LOSS) or one of ALLOWED_LOSSES;
    max_shift: candidates -max_shift..max_shift frames;
    exclude_near: |k| <= this (k != 0) is neither positive nor negative; margin: contrastive
    margin on the embedding distance; group / group_stride: windows per sampled anchor and
    their spacing in frames (they share candidate audio; group=1 samples windows independently)."""

    loss: str = "auto"
    max_shift: int = 15
    group: int = 4
    group_stride: int = 2
    exclude_near: int = 1
    quiet_percentile: float = 30.0
    quiet_weight: float = 0.2
    margin: float = 1.0
    augment: bool = True
    aug: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r} ({'|'.join(LOSSES)})")

    @property
    def n_candidates(self) -> int:
        return 2 * self.max_shift + 1

    def loss_for(self, output: str) -> str:
        """The loss used for a model with this output kind (an error if it does not fit)."""
        loss = DEFAULT_LOSS[output] if self.loss == "auto" else self.loss
        if loss not in ALLOWED_LOSSES[output]:
            raise ValueError(f"loss {loss!r} does not fit a model with {output!r} output "
                             f"({'|'.join(ALLOWED_LOSSES[output])})")
        return loss


def load_clip(path: str | Path, kind: str) -> tuple[PreparedClip, str]:
    """(PreparedClip, speaker) from one cache npz, loading only the arrays ``kind`` needs."""
    with np.load(path, allow_pickle=False) as z:
        visual = ({"mouth": z["mouth"]} if kind in ("mouth", "flow")
                  else {"lips": z["lips"], "blend": z["blend"]})
        clip = PreparedClip.from_arrays(kind, float(z["fps"]), z["frame_times_s"], z["logmel"],
                                        float(z["audio_start_s"]), valid=z["valid"], name=str(path),
                                        **visual)
        speaker = str(z["speaker"]) if "speaker" in z.files else ""
    return clip, speaker


@dataclass
class Batch:
    """video: (A*G, 5, 48, 48) or (A*G, 5, 90) float, anchor-major (G windows per anchor);
    span: (A, L, 40) float frame-clock log-mel covering every candidate of an anchor's windows
    (L = 20 + 2*4*max_shift + 4*stride*(G-1)); weight: (A*G,) loss weights."""

    video: torch.Tensor
    span: torch.Tensor
    weight: torch.Tensor


class SyncDataset(torch.utils.data.Dataset):
    """Training windows of a list of cache npz files (one speaker-disjoint split).

    A window is valid when its 5 frames are valid and the audio exists at every candidate
    shift. Windows come in groups of ``task.group`` windows ``task.group_stride`` frames apart
    (an *anchor*): their candidate audio windows overlap, so a group needs
    ``31 + stride * (group - 1)`` audio embeddings instead of ``31 * group``.
    label_offsets: cache file name -> that clip's own offset in frames (audio late > 0, as
    estimated by ``benchmarks/label_offsets.py``): its positives are re-centred there.
    Item i (an anchor) -> (visual (G, 5, ...) array, span (L, 40) float32 frame-clock log-mel
    covering every candidate of every member, weights (G,) float32).
    """

    def __init__(self, paths: list[str | Path], kind: str, task: TaskConfig | None = None,
                 frames: int = FRAMES, audio_rows: int = AUDIO_ROWS,
                 label_offsets: dict[str, int] | None = None) -> None:
        self.task = task = task or TaskConfig()
        self.kind, self.frames, self.rows = kind, frames, audio_rows
        self.rpf = audio_rows // frames
        self.pad = self.rpf * task.max_shift
        self.offsets = np.arange(task.group) * task.group_stride  # member g starts at s + offsets[g]
        self.span_rows = audio_rows + 2 * self.pad + self.rpf * int(self.offsets[-1])
        self.clips: list[PreparedClip] = []
        self.speakers: list[str] = []
        self.n_windows = 0
        clip_idx, starts, weights = [], [], []
        self.label_offsets: list[int] = []
        for path in paths:
            clip, speaker = load_clip(path, kind)
            moved = int((label_offsets or {}).get(Path(path).name, 0))
            if moved:  # the clip's own offset: its audio is late by ``moved`` frames
                clip.starts = clip.starts + ROWS_PER_FRAME * moved
            self.label_offsets.append(moved)
            s, w = self.clip_windows(clip)
            a, aw = self.clip_anchors(clip, s, w)
            self.n_windows += len(s)
            self.clips.append(clip)
            self.speakers.append(speaker)
            clip_idx.append(np.full(len(a), len(self.clips) - 1))
            starts.append(a)
            weights.append(aw)
        self.clip_idx = np.concatenate(clip_idx) if clip_idx else np.zeros(0, np.int64)
        self.starts = np.concatenate(starts) if starts else np.zeros(0, np.int64)
        self.weights = (np.concatenate(weights) if weights else np.zeros((0, task.group))).astype(np.float32)

    def clip_windows(self, clip: PreparedClip) -> tuple[np.ndarray, np.ndarray]:
        """(starts (W,), weights (W,)) of a clip's valid windows."""
        s = valid_window_starts(clip.valid, self.frames)
        q = clip.starts[s]
        s = s[(q - self.pad >= 0) & (q + self.rows + self.pad <= len(clip.audio))]
        if len(s) == 0:
            return s, np.zeros(0, np.float32)
        energy = clip.audio.mean(1)
        cum = np.concatenate([[0.0], np.cumsum(energy)])
        q = clip.starts[s]
        win = (cum[q + self.rows] - cum[q]) / self.rows
        quiet = win < np.percentile(energy, self.task.quiet_percentile)
        return s, np.where(quiet, self.task.quiet_weight, 1.0).astype(np.float32)

    def clip_anchors(self, clip: PreparedClip, starts: np.ndarray, weights: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
        """(anchors (A,), weights (A, G)): windows whose whole group is valid and evenly timed."""
        t = len(clip.valid)
        is_win, w_at = np.zeros(t + 1, bool), np.zeros(t + 1, np.float32)
        is_win[starts], w_at[starts] = True, weights
        off = self.offsets
        a = starts[starts + off[-1] < t]
        members = a[:, None] + off[None, :]
        ok = is_win[members].all(1) & (
            clip.starts[members] - clip.starts[a][:, None] == self.rpf * off[None, :]).all(1)
        return a[ok], w_at[members[ok]]

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        clip, s = self.clips[self.clip_idx[i]], int(self.starts[i])
        q = int(clip.starts[s]) - self.pad
        visual = np.stack([clip.visual[s + o: s + o + self.frames] for o in self.offsets])
        return visual, clip.audio[q: q + self.span_rows], self.weights[i]

    def sample_indices(self, rng: np.random.Generator, n: int, rank: int = 0, world: int = 1
                       ) -> np.ndarray:
        """``n`` random anchor indices (with replacement) from this rank's shard (i % world == rank)."""
        shard = np.arange(rank, len(self), world)
        return shard[rng.integers(0, len(shard), n)]

    def batch(self, indices: np.ndarray, device: torch.device | str) -> Batch:
        """A batch of ``len(indices)`` anchors = ``len(indices) * group`` windows."""
        items = [self[int(i)] for i in indices]
        video = visual_tensor(np.concatenate([v for v, _, _ in items]), self.kind, device)
        span = torch.from_numpy(np.stack([a for _, a, _ in items])).to(device)
        weight = torch.from_numpy(np.concatenate([w for _, _, w in items])).to(device)
        return Batch(video, span, weight)


def augment(batch: Batch, kind: str, aug: AugmentConfig) -> Batch:
    """The batch with its visual windows and its audio span augmented."""
    return Batch(augment_visual(batch.video, kind, aug), augment_audio(batch.span, aug), batch.weight)


# ----------------------------------------------------------------------------- losses

def candidates(span: torch.Tensor, rows: int = AUDIO_ROWS, rpf: int = ROWS_PER_FRAME) -> torch.Tensor:
    """(A, L, n_mels) span -> (A, U, rows, n_mels): every audio window ``rpf`` rows apart."""
    return span.unfold(1, rows, rpf).transpose(-1, -2)


def near_mask(task: TaskConfig, device: torch.device | str) -> torch.Tensor:
    """(K,) bool: shifts with 0 < |k| <= exclude_near (left out of the softmax)."""
    k = torch.arange(-task.max_shift, task.max_shift + 1, device=device).abs()
    return (k > 0) & (k <= task.exclude_near)


def _gather_rows(span: torch.Tensor, row0: torch.Tensor, rows: int) -> torch.Tensor:
    """(B, L, n_mels) spans, (B,) first rows -> (B, rows, n_mels) windows."""
    idx = row0[:, None] + torch.arange(rows, device=span.device)[None, :]
    return torch.gather(span, 1, idx[:, :, None].expand(-1, -1, span.shape[2]))


def _weighted(per: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return (per * w).sum() / w.sum()


def task_loss(model: torch.nn.Module, raw: torch.nn.Module, batch: Batch, task: TaskConfig
              ) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of one batch and its statistics ("loss", "acc": train offset/pair accuracy).

    ``model`` is what runs the forward (maybe a DDP wrapper); ``raw`` the plain module (for
    its config, output kind and ``logit_scale``). Member g of an anchor starts
    ``g * group_stride`` frames after it; its candidate k reads the span from row
    ``rpf * (g * group_stride + k + max_shift)``.
    """
    output = getattr(raw, "output", "embedding")
    loss_name = task.loss_for(output)
    rows, rpf = raw.config.audio_rows, raw.config.audio_rows // raw.config.frames
    b, c = batch.video.shape[0], task.max_shift
    n_a, dev, w = batch.span.shape[0], batch.span.device, batch.weight
    group = b // n_a
    first = (torch.arange(group, device=dev) * task.group_stride).repeat(n_a)  # (B,) member start
    span = batch.span.repeat_interleave(group, 0)  # (B, L, mels)
    if loss_name == "pm" and output == "pair":
        return _pair_pm_loss(model, batch, task, rows, rpf)
    if loss_name == "pm":
        return _pm_loss(model, raw, batch, task, rows, rpf)
    if output == "offsets":
        s = raw.config.max_shift
        if s != task.max_shift:
            raise ValueError(f"model max_shift {s} != task max_shift {task.max_shift}")
        logits = model(batch.video, _gather_rows(span, rpf * first, rows + 2 * rpf * s))
        logits = logits.masked_fill(near_mask(task, dev), float("-inf"))
        loss = _weighted(F.cross_entropy(logits, torch.full((b,), c, device=dev), reduction="none"), w)
        acc = ((logits.argmax(1) - c).abs() <= 1).float().mean()
        return loss, {"loss": loss.item(), "acc": acc.item()}
    if output == "regression":
        lim = min(int(raw.config.max_offset), c)
        d = torch.randint(-lim, lim + 1, (b,), device=dev)
        audio = _gather_rows(span, rpf * (first - d + c), rows)  # audio late by d frames
        pred = model(batch.video, audio)
        loss = _weighted(F.smooth_l1_loss(pred, d.float(), reduction="none"), w)
        acc = ((pred - d).abs() <= 1).float().mean()
        return loss, {"loss": loss.item(), "acc": acc.item()}
    far = torch.arange(-task.max_shift, task.max_shift + 1, device=dev)
    far = far[far.abs() > task.exclude_near]
    y = (torch.rand(b, device=dev) < 0.5).float()
    k = torch.where(y > 0, torch.zeros(b, dtype=torch.long, device=dev),
                    far[torch.randint(0, len(far), (b,), device=dev)])
    audio = _gather_rows(span, rpf * (first + k + c), rows)
    if output == "pair":
        logit = model(batch.video, audio)
        loss = _weighted(F.binary_cross_entropy_with_logits(logit, y, reduction="none"), w)
        acc = ((logit > 0).float() == y).float().mean()
        return loss, {"loss": loss.item(), "acc": acc.item()}
    v, a = model(batch.video, audio)
    cos = (v * a).sum(-1)
    if loss_name == "bce":
        p = ((cos + 1) / 2).clamp(1e-6, 1 - 1e-6)
        per = F.binary_cross_entropy(p, y, reduction="none")
        acc = ((p > 0.5).float() == y).float().mean()
    else:
        d = torch.sqrt((2 - 2 * cos).clamp_min(1e-8))
        per = y * d**2 + (1 - y) * F.relu(task.margin - d) ** 2
        acc = ((d < task.margin / 2).float() == y).float().mean()
    loss = _weighted(per, w)
    return loss, {"loss": loss.item(), "acc": acc.item()}


def _shared_candidates(batch: Batch, task: TaskConfig, rows: int, rpf: int
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """(audio (A*U, rows, mels): every distinct candidate window of each anchor group, idx (B, K)
    long): window b's candidate k (shift k - max_shift) is ``audio[idx[b, k]]``. Member g of an
    anchor starts ``g * group_stride`` frames after it, so its candidates start g * stride later."""
    b, n_k, n_a, dev = batch.video.shape[0], task.n_candidates, batch.span.shape[0], batch.span.device
    group = b // n_a
    uniq = candidates(batch.span, rows, rpf)  # (A, U, rows, mels), shared by the group
    first = (torch.arange(group, device=dev) * task.group_stride).repeat(n_a)  # (B,)
    anchor = torch.arange(n_a, device=dev).repeat_interleave(group)  # (B,)
    idx = anchor[:, None] * uniq.shape[1] + first[:, None] + torch.arange(n_k, device=dev)[None, :]
    return uniq.flatten(0, 1), idx


def _pair_pm_loss(model: torch.nn.Module, batch: Batch, task: TaskConfig, rows: int, rpf: int
                  ) -> tuple[torch.Tensor, dict[str, float]]:
    """Perfect Match for a pair classifier: the in-sync pair's logit competes in a softmax with
    the pairs at every shift |k| > exclude_near of the same window, as ``_pm_loss`` does for
    the embeddings (the model is unchanged: one logit per pair). The model's ``candidates``
    forward runs its audio encoder once per distinct audio window of the anchor group and
    only the fusion per pair. BCE on single pairs sat at ln 2, and 7 sampled negatives per
    window (the first version of this loss) at ln 8, for the whole of our CPU runs."""
    b, c, dev = batch.video.shape[0], task.max_shift, batch.span.device
    uniq, idx = _shared_candidates(batch, task, rows, rpf)
    logits = model(batch.video, uniq, candidates=idx)  # (B, K)
    logits = logits.masked_fill(near_mask(task, dev), float("-inf"))
    ce = F.cross_entropy(logits, torch.full((b,), c, device=dev), reduction="none")
    loss = _weighted(ce, batch.weight)
    acc = ((logits.argmax(1) - c).abs() <= 1).float().mean()
    return loss, {"loss": loss.item(), "acc": acc.item()}


def _pm_loss(model: torch.nn.Module, raw: EmbeddingModel, batch: Batch, task: TaskConfig,
             rows: int, rpf: int) -> tuple[torch.Tensor, dict[str, float]]:
    """Perfect Match: softmax over every candidate's cosine (the group shares the audio)."""
    b, c, dev = batch.video.shape[0], task.max_shift, batch.span.device
    uniq, idx = _shared_candidates(batch, task, rows, rpf)
    v, a = model(batch.video, uniq)
    cos = torch.einsum("bd,bkd->bk", v, a[idx])
    logits = (cos * raw.logit_scale).masked_fill(near_mask(task, dev), float("-inf"))
    ce = F.cross_entropy(logits, torch.full((b,), c, device=dev), reduction="none")
    loss = _weighted(ce, batch.weight)
    acc = ((cos.argmax(1) - c).abs() <= 1).float().mean()
    return loss, {"loss": loss.item(), "acc": acc.item(), "scale": raw.logit_scale.item()}
