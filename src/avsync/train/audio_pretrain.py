"""Audio-tower pre-training on speech without video (issue 11: learn where data is scarce).

A sync model's audio tower (``models.syncnet.AudioTower``) learns from the few minutes of real
video there are. Speech alone is easier to come by, and a phone recogniser trained on far more
speech than that can label it: pocketsphinx in all-phone mode gives a CMU phone (or silence)
for every 10 ms hop. Pre-training teaches the tower's conv blocks to tell, for each of the 5
frame steps of its 20-row window, which phone is spoken there (cross-entropy through a 1x1 head
on the pooled conv map, the map the tower's embedding layer reads). ``init_audio_tower`` then
copies those conv blocks into a fresh sync model; its embedding layer starts from scratch.

Units: log-mel rows are 10 ms hops (``timing.AUDIO_HOP_S``), 4 rows per 25 fps frame; the
window is ``AUDIO_ROWS`` rows. pocketsphinx is optional (``pip install pocketsphinx``): only
labelling needs it, loading a pre-trained tower does not.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from avsync.errors import AvsyncError
from avsync.models.neural import standardise_logmel
from avsync.models.syncnet import AUDIO_ROWS, ROWS_PER_FRAME, AudioTower
from avsync.timing import SAMPLE_RATE_HZ
from avsync.train.augment import AugmentConfig, augment_audio

PHONES: tuple[str, ...] = (
    "SIL", "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G",
    "HH", "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH",
    "UH", "UW", "V", "W", "Y", "Z", "ZH")
"""Class 0 is silence (and pocketsphinx's noise fillers); then the 39 CMU phones."""

PHONE_INDEX: dict[str, int] = {p: i for i, p in enumerate(PHONES)}


def phone_labels(samples: np.ndarray, n_hops: int) -> np.ndarray:
    """(n,) float32 mono 16 kHz speech -> (n_hops,) int64 phone class per 10 ms hop.

    pocketsphinx all-phone recognition (its US-English acoustic model and phone bigram);
    hops it leaves unlabelled, noise fillers and unknown symbols are silence (0).
    """
    try:
        from pocketsphinx import Decoder, get_model_path
    except ImportError as exc:
        raise AvsyncError("audio pre-training labels need 'pip install pocketsphinx'") from exc
    model = Path(get_model_path()) / "en-us"
    dec = Decoder(hmm=str(model / "en-us"), allphone=str(model / "en-us-phone.lm.bin"),
                  lw=2.0, pip=0.3, beam=1e-20, pbeam=1e-20, loglevel="FATAL")
    pcm = (np.clip(np.asarray(samples, np.float32), -1.0, 1.0) * 32767).astype("<i2").tobytes()
    dec.start_utt()
    dec.process_raw(pcm, full_utt=True)
    dec.end_utt()
    labels = np.zeros(n_hops, np.int64)
    for seg in dec.seg():
        lo, hi = max(0, seg.start_frame), min(n_hops, seg.end_frame + 1)
        labels[lo:hi] = PHONE_INDEX.get(seg.word, 0)
    return labels


@dataclass(frozen=True)
class PretrainConfig:
    """steps / batch_size / lr / warmup_steps: the optimisation (AdamW, cosine after warm-up);
    holdout: share of the files kept out to measure phone accuracy; seed: everything random."""

    steps: int = 1500
    batch_size: int = 64
    lr: float = 2e-3
    warmup_steps: int = 100
    weight_decay: float = 1e-4
    holdout: float = 0.15
    seed: int = 0


class PhoneHead(nn.Module):
    """An AudioTower's conv blocks + a 1x1 phone classifier per frame step.

    forward(audio (B, rows, n_mels)) -> logits (B, len(PHONES), rows // ROWS_PER_FRAME).
    """

    def __init__(self, tower: AudioTower) -> None:
        super().__init__()
        self.convs = tower.convs
        self.time_steps = tower.time_steps
        channels = tower.fc.in_features // tower.time_steps
        self.head = nn.Conv1d(channels, len(PHONES), 1)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        x = self.convs(audio.unsqueeze(1))  # (B, C, rows', mels')
        x = F.adaptive_avg_pool2d(x, (self.time_steps, 1)).squeeze(-1)  # (B, C, steps)
        return self.head(x)


@dataclass
class LabelledAudio:
    """One file: logmel_z (N, n_mels) standardised log-mel on the 10 ms grid, labels (N,)."""

    name: str
    logmel_z: np.ndarray
    labels: np.ndarray


def step_targets(labels: np.ndarray, rows: int = AUDIO_ROWS) -> np.ndarray:
    """(rows,) hop labels -> (rows // ROWS_PER_FRAME,) the most frequent label of each frame step."""
    blocks = labels[: rows - rows % ROWS_PER_FRAME].reshape(-1, ROWS_PER_FRAME)
    return np.array([np.bincount(b, minlength=len(PHONES)).argmax() for b in blocks], np.int64)


def _batch(files: list[LabelledAudio], weights: np.ndarray, n: int, rng: np.random.Generator,
           rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    idx = rng.choice(len(files), size=n, p=weights)
    xs, ys = [], []
    for i in idx:
        f = files[i]
        s = int(rng.integers(0, len(f.labels) - rows + 1))
        xs.append(f.logmel_z[s:s + rows])
        ys.append(step_targets(f.labels[s:s + rows], rows))
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))


def _accuracy(head: PhoneHead, files: list[LabelledAudio], rows: int) -> float:
    """Share of frame steps (non-overlapping windows of every file) whose phone is right."""
    right = total = 0
    head.eval()
    with torch.no_grad():
        for f in files:
            starts = range(0, len(f.labels) - rows + 1, rows)
            if not starts:
                continue
            x = torch.from_numpy(np.stack([f.logmel_z[s:s + rows] for s in starts]))
            y = np.stack([step_targets(f.labels[s:s + rows], rows) for s in starts])
            pred = head(x).argmax(1).numpy()
            right += int((pred == y).sum())
            total += y.size
    head.train()
    return right / max(total, 1)


def pretrain_audio_tower(tower: AudioTower, files: list[LabelledAudio],
                         cfg: PretrainConfig | None = None, aug: AugmentConfig | None = None,
                         log=print) -> dict:
    """Train ``tower.convs`` in place to classify the phone of each frame step.

    Files are split (by file) into training and a held-out ``cfg.holdout`` share. Returns a
    summary: steps, files and seconds on each side, held-out frame-step accuracy before and
    after, and the accuracy of always answering the most frequent class.
    """
    cfg = cfg or PretrainConfig()
    aug = aug or AugmentConfig()
    rows = tower.time_steps * ROWS_PER_FRAME
    usable = [f for f in files if len(f.labels) >= rows]
    if len(usable) < 2:
        raise ValueError("audio pre-training needs at least two files of one window or more")
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    order = rng.permutation(len(usable))
    n_held = max(1, int(round(cfg.holdout * len(usable))))
    held = [usable[i] for i in order[:n_held]]
    train = [usable[i] for i in order[n_held:]]
    weights = np.array([len(f.labels) - rows + 1 for f in train], np.float64)
    weights /= weights.sum()
    head = PhoneHead(tower)
    head.train()
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return 0.5 * (1.0 + np.cos(np.pi * min(1.0, t)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    before = _accuracy(head, held, rows)
    counts = np.bincount(np.concatenate([f.labels for f in train]), minlength=len(PHONES))
    majority = int(counts.argmax())
    held_steps = np.concatenate([step_targets(f.labels[s:s + rows], rows) for f in held
                                 for s in range(0, len(f.labels) - rows + 1, rows)])
    for step in range(cfg.steps):
        x, y = _batch(train, weights, cfg.batch_size, rng, rows)
        x = augment_audio(x, aug)
        loss = F.cross_entropy(head(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if log is not None and (step + 1) % max(1, cfg.steps // 10) == 0:
            log(f"audio pre-training step {step + 1}/{cfg.steps}: loss {loss.item():.3f}")
    return {"steps": cfg.steps, "train_files": len(train), "heldout_files": len(held),
            "train_s": round(sum(len(f.labels) for f in train) * 0.01, 1),
            "heldout_s": round(sum(len(f.labels) for f in held) * 0.01, 1),
            "heldout_step_accuracy_before": round(before, 4),
            "heldout_step_accuracy": round(_accuracy(head, held, rows), 4),
            "heldout_majority_accuracy": round(float(np.mean(held_steps == majority)), 4),
            "config": asdict(cfg)}


def labelled_audio(name: str, samples: np.ndarray) -> LabelledAudio:
    """Standardised log-mel + phone labels of 16 kHz mono ``samples`` (see ``phone_labels``)."""
    from avsync.features import log_mel

    if len(samples) < SAMPLE_RATE_HZ // 10:
        raise ValueError(f"{name}: under 0.1 s of audio")
    z = standardise_logmel(log_mel(samples))
    return LabelledAudio(name, z, phone_labels(samples, len(z)))


def save_tower(path: str | Path, tower: AudioTower, meta: dict) -> None:
    """Write the conv blocks of ``tower`` (``convs.*`` tensors) and ``meta`` as safetensors."""
    from safetensors.torch import save_file

    state = {f"convs.{k}": v.detach().cpu().contiguous() for k, v in tower.convs.state_dict().items()}
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(state, str(tmp), metadata={"audio_pretrain": json.dumps(meta, sort_keys=True)})
    tmp.replace(path)


def init_audio_tower(model: nn.Module, path: str | Path) -> dict:
    """Load pre-trained conv blocks (``save_tower``) into ``model.audio``; returns their meta.

    The shapes must match the model's audio tower (same ``audio_channels`` and norm)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise AvsyncError(f"no pre-trained audio tower at {path}")
    state = load_file(str(path))
    with safe_open(str(path), "pt") as fh:
        meta = json.loads((fh.metadata() or {}).get("audio_pretrain", "{}"))
    convs = {k.removeprefix("convs."): v for k, v in state.items()}
    try:
        model.audio.convs.load_state_dict(convs)
    except RuntimeError as exc:
        raise AvsyncError(f"{path}: the pre-trained audio tower does not fit this model") from exc
    return meta
