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

from avsync.models.neural import PreparedClip, clip_similarities, valid_window_starts, visual_tensor
from avsync.models.syncnet import AUDIO_ROWS, FRAMES, ROWS_PER_FRAME, EmbeddingModel

LOSSES: tuple[str, ...] = ("pm", "bce", "contrastive")


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation strengths. Mouth values are in standardised grey units (1 = 64 grey levels).

    jitter_px: crop translation +- pixels (same for the 5 frames); brightness: +- offset;
    contrast: +- relative gain; blur_p / blur_sigma: probability and range of a Gaussian blur
    (pixels); noise: max std of pixel noise; lips_noise: std of noise on standardised lips;
    gain: +- offset of the standardised log-mel; floor_p / floor: probability and range of a
    noise floor (``logaddexp(x, floor)``); audio_noise: std of Gaussian noise on the log-mel.
    """

    jitter_px: int = 3
    brightness: float = 0.4
    contrast: float = 0.3
    blur_p: float = 0.3
    blur_sigma: tuple[float, float] = (0.5, 1.2)
    noise: float = 0.1
    lips_noise: float = 0.1
    gain: float = 0.3
    floor_p: float = 0.3
    floor: tuple[float, float] = (-2.0, -0.5)
    audio_noise: float = 0.05


@dataclass(frozen=True)
class TaskConfig:
    """loss: "pm" | "bce" | "contrastive"; max_shift: candidates -max_shift..max_shift frames;
    exclude_near: |k| <= this (k != 0) is neither positive nor negative; margin: contrastive
    margin on the embedding distance; group / group_stride: windows per sampled anchor and
    their spacing in frames (they share candidate audio; group=1 samples windows independently)."""

    loss: str = "pm"
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


def load_clip(path: str | Path, kind: str) -> tuple[PreparedClip, str]:
    """(PreparedClip, speaker) from one cache npz, loading only the arrays ``kind`` needs."""
    with np.load(path, allow_pickle=False) as z:
        visual = {"mouth": z["mouth"]} if kind == "mouth" else {"lips": z["lips"], "blend": z["blend"]}
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
    Item i (an anchor) -> (visual (G, 5, ...) array, span (L, 40) float32 frame-clock log-mel
    covering every candidate of every member, weights (G,) float32).
    """

    def __init__(self, paths: list[str | Path], kind: str, task: TaskConfig | None = None,
                 frames: int = FRAMES, audio_rows: int = AUDIO_ROWS) -> None:
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
        for path in paths:
            clip, speaker = load_clip(path, kind)
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


# ----------------------------------------------------------------------------- augmentation

def _uniform(n: int, lo: float, hi: float, device: torch.device) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, device=device)


def augment_mouth(x: torch.Tensor, aug: AugmentConfig) -> torch.Tensor:
    """(B, F, H, W) standardised mouth crops -> augmented copy (jitter, light, blur, noise)."""
    b, _, h, w = x.shape
    dev = x.device
    if aug.jitter_px > 0:
        shift = torch.randint(-aug.jitter_px, aug.jitter_px + 1, (b, 2), device=dev).float()
        theta = torch.zeros(b, 2, 3, device=dev)
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0
        theta[:, 0, 2], theta[:, 1, 2] = 2 * shift[:, 0] / w, 2 * shift[:, 1] / h
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="nearest", padding_mode="border", align_corners=False)
    gain = _uniform(b, 1 - aug.contrast, 1 + aug.contrast, dev)[:, None, None, None]
    x = x * gain + _uniform(b, -aug.brightness, aug.brightness, dev)[:, None, None, None]
    if aug.blur_p > 0:
        sigma = float(torch.empty(1).uniform_(*aug.blur_sigma))
        k = torch.exp(-0.5 * (torch.arange(5, device=dev) - 2.0) ** 2 / sigma**2)
        k = k / k.sum()
        c = x.shape[1]
        blurred = F.conv2d(F.pad(x, (2, 2, 0, 0), mode="replicate"), k.view(1, 1, 1, 5).repeat(c, 1, 1, 1),
                           groups=c)
        blurred = F.conv2d(F.pad(blurred, (0, 0, 2, 2), mode="replicate"),
                           k.view(1, 1, 5, 1).repeat(c, 1, 1, 1), groups=c)
        x = torch.where((torch.rand(b, device=dev) < aug.blur_p)[:, None, None, None], blurred, x)
    return x + torch.randn_like(x) * _uniform(b, 0, aug.noise, dev)[:, None, None, None]


def augment_lips(x: torch.Tensor, aug: AugmentConfig) -> torch.Tensor:
    """(B, F, 90) standardised lip features -> noisy copy."""
    return x + aug.lips_noise * torch.randn_like(x)


def augment_audio(span: torch.Tensor, aug: AugmentConfig) -> torch.Tensor:
    """(B, L, n_mels) standardised log-mel -> gain, noise floor and noise (same for all shifts)."""
    b, dev = span.shape[0], span.device
    x = span + _uniform(b, -aug.gain, aug.gain, dev)[:, None, None]
    if aug.floor_p > 0:
        floor = _uniform(b, *aug.floor, dev)[:, None, None].expand_as(x)
        use = (torch.rand(b, device=dev) < aug.floor_p)[:, None, None]
        x = torch.where(use, torch.logaddexp(x, floor), x)
    return x + aug.audio_noise * torch.randn_like(x)


def augment(batch: Batch, kind: str, aug: AugmentConfig) -> Batch:
    video = augment_mouth(batch.video, aug) if kind == "mouth" else augment_lips(batch.video, aug)
    return Batch(video, augment_audio(batch.span, aug), batch.weight)


# ----------------------------------------------------------------------------- losses

def candidates(span: torch.Tensor, rows: int = AUDIO_ROWS, rpf: int = ROWS_PER_FRAME) -> torch.Tensor:
    """(A, L, n_mels) span -> (A, U, rows, n_mels): every audio window ``rpf`` rows apart."""
    return span.unfold(1, rows, rpf).transpose(-1, -2)


def near_mask(task: TaskConfig, device: torch.device | str) -> torch.Tensor:
    """(K,) bool: shifts with 0 < |k| <= exclude_near (left out of the softmax)."""
    k = torch.arange(-task.max_shift, task.max_shift + 1, device=device).abs()
    return (k > 0) & (k <= task.exclude_near)


def task_loss(model: torch.nn.Module, raw: EmbeddingModel, batch: Batch, task: TaskConfig
              ) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of one batch and its statistics ("loss", "acc": train offset/pair accuracy).

    ``model`` is what runs the forward (maybe a DDP wrapper); ``raw`` the plain module (for
    ``logit_scale``).
    """
    rows, rpf = raw.config.audio_rows, raw.config.audio_rows // raw.config.frames
    b, c, n_k = batch.video.shape[0], task.max_shift, task.n_candidates
    n_a, dev, w = batch.span.shape[0], batch.span.device, batch.weight
    group = b // n_a
    first = torch.arange(group, device=dev) * task.group_stride  # member g's k=-max window
    if task.loss == "pm":
        uniq = candidates(batch.span, rows, rpf)  # (A, U, rows, mels), shared by the group
        v, a = model(batch.video, uniq.flatten(0, 1))
        a = a.view(n_a, uniq.shape[1], -1)[:, first[:, None] + torch.arange(n_k, device=dev)]
        cos = torch.einsum("bd,bkd->bk", v, a.reshape(b, n_k, -1))
        logits = (cos * raw.logit_scale).masked_fill(near_mask(task, dev), float("-inf"))
        ce = F.cross_entropy(logits, torch.full((b,), c, device=dev), reduction="none")
        loss = (ce * w).sum() / w.sum()
        acc = ((cos.argmax(1) - c).abs() <= 1).float().mean()
        return loss, {"loss": loss.item(), "acc": acc.item(), "scale": raw.logit_scale.item()}
    far = torch.arange(-task.max_shift, task.max_shift + 1, device=dev)
    far = far[far.abs() > task.exclude_near]
    y = (torch.rand(b, device=dev) < 0.5).float()
    k = torch.where(y > 0, torch.zeros(b, dtype=torch.long, device=dev),
                    far[torch.randint(0, len(far), (b,), device=dev)])
    row0 = rpf * (first.repeat(n_a) + k + c)
    idx = row0[:, None] + torch.arange(rows, device=dev)[None, :]
    span = batch.span.repeat_interleave(group, 0)
    audio = torch.gather(span, 1, idx[:, :, None].expand(-1, -1, span.shape[2]))
    v, a = model(batch.video, audio)
    cos = (v * a).sum(-1)
    if task.loss == "bce":
        p = ((cos + 1) / 2).clamp(1e-6, 1 - 1e-6)
        per = F.binary_cross_entropy(p, y, reduction="none")
        acc = ((p > 0.5).float() == y).float().mean()
    else:
        d = torch.sqrt((2 - 2 * cos).clamp_min(1e-8))
        per = y * d**2 + (1 - y) * F.relu(task.margin - d) ** 2
        acc = ((d < task.margin / 2).float() == y).float().mean()
    loss = (per * w).sum() / w.sum()
    return loss, {"loss": loss.item(), "acc": acc.item()}


# ----------------------------------------------------------------------------- evaluation

def clip_offset_counts(model: EmbeddingModel, clip: PreparedClip, task: TaskConfig,
                       device: torch.device | str, max_windows: int = 500,
                       context_frames: int = 15) -> dict[str, float]:
    """Offset-accuracy counts of one clip (true offset 0).

    Every window (stride 1, at most ``max_windows`` around the clip's middle) picks the argmax
    of its 31 similarities; right when within +-1 frame. ``@ctx``: similarities averaged over
    the windows of ``context_frames`` consecutive frames first (VocaLiST's protocol).
    Returns sums: n, correct, speech_n, speech_correct, n_ctx, correct_ctx, ce (PM loss sum).
    """
    frames = model.config.frames
    valid = clip.valid
    if max_windows and len(valid) - frames + 1 > max_windows:
        a = (len(valid) - frames + 1 - max_windows) // 2
        keep = np.zeros_like(valid)
        keep[a:a + max_windows + frames - 1] = True
        valid = valid & keep
    view = PreparedClip(clip.kind, clip.fps, clip.visual, valid, clip.audio, clip.starts, clip.name)
    shifts = np.arange(-task.max_shift, task.max_shift + 1)
    starts, sims = clip_similarities(model, view, shifts, 1, device)
    full = np.isfinite(sims).all(1)
    starts, sims = starts[full], sims[full]
    out = dict.fromkeys(("n", "correct", "speech_n", "speech_correct", "n_ctx", "correct_ctx", "ce"), 0.0)
    if len(starts) == 0:
        return out
    c = task.max_shift
    right = np.abs(sims.argmax(1) - c) <= 1
    rows = model.config.audio_rows
    energy = clip.audio.mean(1)
    cum = np.concatenate([[0.0], np.cumsum(energy)])
    q = clip.starts[starts]
    speech = (cum[q + rows] - cum[q]) / rows >= np.percentile(energy, task.quiet_percentile)
    logits = sims * model.logit_scale.item()
    logits[:, near_mask(task, "cpu").numpy()] = -np.inf
    lse = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
    out.update(n=len(starts), correct=right.sum(), speech_n=speech.sum(),
               speech_correct=(right & speech).sum(), ce=float((lse - logits[:, c]).sum()))
    n_win = context_frames - frames + 1
    if len(starts) >= n_win:
        run = starts[n_win - 1:] - starts[: len(starts) - n_win + 1] == n_win - 1
        cs = np.concatenate([np.zeros((1, sims.shape[1])), np.cumsum(sims, 0)])
        avg = cs[n_win:] - cs[:-n_win]
        ok = np.abs(avg.argmax(1) - c) <= 1
        out.update(n_ctx=run.sum(), correct_ctx=(ok & run).sum())
    return {k: float(v) for k, v in out.items()}


def offset_metrics(sums: dict[str, float], context_frames: int = 15) -> dict[str, float]:
    """Accuracies from summed ``clip_offset_counts``: val_acc (@5 frames, +-1), val_acc_speech,
    val_acc_ctx{context_frames}, val_loss (Perfect-Match cross-entropy), val_windows."""
    div = lambda a, b: float(sums[a] / sums[b]) if sums[b] else float("nan")  # noqa: E731
    return {"val_acc": div("correct", "n"), "val_acc_speech": div("speech_correct", "speech_n"),
            f"val_acc_ctx{context_frames}": div("correct_ctx", "n_ctx"), "val_loss": div("ce", "n"),
            "val_windows": float(sums["n"])}
