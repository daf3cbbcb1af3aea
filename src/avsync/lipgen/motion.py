"""Motion instead of pixels: lip-landmark motion from speech, then a warp of the identity image.

A deviation from Chen et al. 2018 (issue 15): with minutes of training video, a network that
draws every pixel blurs them; the lip shape is 80 numbers per frame, learnable from that much
data, and warping the identity image keeps its texture.

* targets: the 40 lip points of every real frame in the aligned 64 x 64 crop (the face
  landmarker's, cached by ``avsync prepare --for generation``), minus the clip's mean lip shape
  (so the speaker's mouth shape cancels and the motion remains);
* features: the standardised log-mel rows of CONTEXT_FRAMES frames either side of the frame
  (4 rows per frame, pairs of rows averaged): (2 * CONTEXT_FRAMES + 1) * 2 * n_mels numbers;
* model: ridge regression (closed form) on those features; its strength is chosen on
  speakers held out from the training split (the held-out test speakers are never used);
* synthesis: frame t moves the identity's lip points by pred(t) - pred(t_id) (the identity
  image was taken at t_id; a photo: the mean prediction of silence), smoothed over 3 frames, and
  the identity image is warped with a thin-plate spline through the moved points (anchored by a
  ring of fixed points around the mouth and the crop border).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avsync.lipgen.model import IMAGE_SIZE, ROWS_PER_FRAME

CONTEXT_FRAMES: int = 3
"""Frames of speech either side of a frame used to predict its lip shape (0.12 s each way)."""

N_POINTS: int = 40


def frame_features(logmel_std: np.ndarray, row0: np.ndarray) -> np.ndarray:
    """(T, F) features: for frame k the rows row0[k] - 4 * CONTEXT_FRAMES .. row0[k] + 4 + 4 *
    CONTEXT_FRAMES of the (N, n_mels) standardised log-mel (edges repeated), pairs averaged."""
    span = (2 * CONTEXT_FRAMES + 1) * ROWS_PER_FRAME
    offs = np.arange(span) - CONTEXT_FRAMES * ROWS_PER_FRAME
    idx = np.clip(np.asarray(row0)[:, None] + offs[None], 0, len(logmel_std) - 1)
    x = logmel_std[idx]  # (T, span, n_mels)
    x = 0.5 * (x[:, 0::2] + x[:, 1::2])
    return x.reshape(len(x), -1).astype(np.float32)


@dataclass
class LipMotionModel:
    """Ridge regression from frame features to centred lip shapes (80 numbers, crop pixels).

    mean_x (F,), scale_x (F,): feature standardisation; weights (F + 1, 80) with the bias row
    last; alpha: the ridge strength chosen on held-out speakers."""

    mean_x: np.ndarray
    scale_x: np.ndarray
    weights: np.ndarray
    alpha: float

    def predict(self, features: np.ndarray) -> np.ndarray:
        """(T, F) -> (T, 40, 2) centred lip shapes in crop pixels."""
        z = (features - self.mean_x) / self.scale_x
        y = z @ self.weights[:-1] + self.weights[-1]
        return y.reshape(len(y), N_POINTS, 2)


def _solve(x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    xb = np.concatenate([x, np.ones((len(x), 1), x.dtype)], axis=1).astype(np.float64)
    reg = alpha * np.eye(xb.shape[1])
    reg[-1, -1] = 0.0
    return np.linalg.solve(xb.T @ xb + reg, xb.T @ y.astype(np.float64))


def clip_targets(lips: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(T, 40, 2) lip points -> (T, 80) minus the clip's mean shape over valid frames."""
    centred = lips - lips[valid].mean(axis=0, keepdims=True)
    return centred.reshape(len(lips), -1)


def fit_motion(
    clips: Sequence[tuple[np.ndarray, np.ndarray, str]],
    alphas: Sequence[float] = (1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6),
    holdout_share: float = 0.25,
    seed: int = 0,
) -> tuple[LipMotionModel, dict[str, float]]:
    """Fit on ``clips`` = [(features (T, F), targets (T, 80) NaN-free, speaker)]: ``alpha`` is
    chosen by the mean point error on a speaker-disjoint ``holdout_share`` of the speakers, then
    the model is refitted on all. Returns (model, {"alpha", "val_err_px", "val_err_zero_px"})."""
    speakers = sorted({s for _, _, s in clips})
    rng = np.random.default_rng(seed)
    held = set(rng.choice(speakers, max(1, int(round(holdout_share * len(speakers)))), replace=False))
    x_all = np.concatenate([f for f, _, _ in clips])
    mean_x, scale_x = x_all.mean(axis=0), x_all.std(axis=0) + 1e-6

    def stack(keep: bool) -> tuple[np.ndarray, np.ndarray]:
        part = [(f, t) for f, t, s in clips if (s in held) == keep]
        return (np.concatenate([(f - mean_x) / scale_x for f, _ in part]),
                np.concatenate([t for _, t in part]))

    x_tr, y_tr = stack(False)
    x_va, y_va = stack(True)

    def err(w: np.ndarray) -> float:
        pred = x_va @ w[:-1] + w[-1]
        return float(np.linalg.norm((pred - y_va).reshape(-1, N_POINTS, 2), axis=-1).mean())

    scores = {a: err(_solve(x_tr, y_tr, a)) for a in alphas}
    best = min(scores, key=scores.get)
    zero = float(np.linalg.norm(y_va.reshape(-1, N_POINTS, 2), axis=-1).mean())
    x_full = (x_all - mean_x) / scale_x
    y_full = np.concatenate([t for _, t, _ in clips])
    model = LipMotionModel(mean_x.astype(np.float32), scale_x.astype(np.float32),
                           _solve(x_full, y_full, best).astype(np.float32), float(best))
    return model, {"alpha": float(best), "val_err_px": scores[best], "val_err_zero_px": zero,
                   "val_speakers": float(len(held)), "train_frames": float(len(y_full))}


RING_SCALE: float = 1.9
"""The warp's fixed ring lies at this multiple of the mouth's half-extent around its centre."""


def anchor_points(lips: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """Fixed points of the warp: a ring around the mouth (RING_SCALE x its half-extent) and the
    crop border."""
    c, r = _ring(lips)
    a = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    ring = c + np.stack([r[0] * np.cos(a), r[1] * np.sin(a)], axis=1)
    e = np.linspace(0, size - 1, 6)
    border = np.concatenate([np.stack([e, np.zeros_like(e)], 1), np.stack([e, np.full_like(e, size - 1)], 1),
                             np.stack([np.zeros_like(e), e], 1), np.stack([np.full_like(e, size - 1), e], 1)])
    return np.concatenate([ring, border])


def _ring(lips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c = lips.mean(axis=0)
    return c, np.maximum(np.abs(lips - c).max(axis=0) * RING_SCALE, 6.0)


def warp_identity(identity: np.ndarray, lips: np.ndarray, moved: np.ndarray) -> np.ndarray:
    """``identity`` (S, S, 3) uint8 warped so that its lip points ``lips`` (40, 2) land on
    ``moved`` (40, 2): a thin-plate spline maps every output pixel back into the identity. The
    displacement fades to exactly zero just outside the anchor ring, so the rest of the image is
    copied, not resampled (resampling at fractional offsets would blur it)."""
    import cv2
    from scipy.interpolate import RBFInterpolator

    size = identity.shape[0]
    anchors = anchor_points(lips, size)
    dst = np.concatenate([moved, anchors])
    src = np.concatenate([lips, anchors])
    tps = RBFInterpolator(dst, src - dst, kernel="thin_plate_spline", smoothing=1e-3)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    grid = np.stack([xx.ravel(), yy.ravel()], axis=1)
    c, r = _ring(lips)
    rho = np.sqrt((((grid - c) / r) ** 2).sum(axis=1))  # 1 on the ring
    fade = np.clip((1.25 - rho) / 0.25, 0.0, 1.0)
    fade = fade * fade * (3 - 2 * fade)  # smoothstep: 1 inside the ring, 0 beyond 1.25 x
    back = grid + fade[:, None] * tps(grid)
    mx = back[:, 0].reshape(size, size).astype(np.float32)
    my = back[:, 1].reshape(size, size).astype(np.float32)
    return cv2.remap(identity, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def motion_frames(model: LipMotionModel, logmel_std: np.ndarray, row0: np.ndarray, identity: np.ndarray,
                  identity_lips: np.ndarray, identity_frame: int | None = None,
                  gain: float = 1.0) -> np.ndarray:
    """(T, S, S, 3) uint8: the identity warped by the predicted lip motion of each frame.

    row0 (T,): first log-mel row of each 25 fps frame; identity_frame: the frame the identity
    image was taken from (None: a photo, motion relative to the mean prediction); gain scales
    the motion."""
    pred = model.predict(frame_features(logmel_std, row0))  # (T, 40, 2)
    if len(pred) >= 3:
        pad = np.concatenate([pred[:1], pred, pred[-1:]])
        pred = 0.25 * pad[:-2] + 0.5 * pad[1:-1] + 0.25 * pad[2:]
    ref = pred[identity_frame] if identity_frame is not None else pred.mean(axis=0)
    lips = np.asarray(identity_lips, np.float64)
    return np.stack([warp_identity(identity, lips, lips + gain * (p - ref)) for p in pred])


def soften_mouth(frames: np.ndarray, sigma_px: float,
                 mask_sigma_px: tuple[float, float] = (20.0, 16.0)) -> np.ndarray:
    """(T, S, S, 3) uint8 with the mouth region (the soft mask of
    :func:`avsync.lipgen.model.mouth_mask`) Gaussian-blurred by ``sigma_px``: the expected
    frame under a speaker's sub-pixel crop jitter is smoother than any one frame, so a mild blur
    raises SSIM and PSNR against the real crops (it costs LMD; chosen on training speakers)."""
    if sigma_px <= 0:
        return frames
    import cv2

    from avsync.lipgen.model import mouth_mask

    m = mouth_mask(frames.shape[1], mask_sigma_px).numpy()[None, :, :, None]
    blurred = np.stack([cv2.GaussianBlur(f, (0, 0), sigma_px) for f in frames]).astype(np.float32)
    return np.clip(np.rint(m * blurred + (1 - m) * frames), 0, 255).astype(np.uint8)


MOTION_FORMAT: str = "avsync-lipmotion-1"


def save_motion(path: str | Path, model: LipMotionModel, metrics: dict | None = None) -> Path:
    """Write the model to a safetensors file atomically (float32 tensors + JSON metadata)."""
    import json

    import torch

    from avsync.train.checkpoint import write_safetensors

    state = {k: torch.from_numpy(np.ascontiguousarray(getattr(model, k), np.float32))
             for k in ("mean_x", "scale_x", "weights")}
    meta = {"format": MOTION_FORMAT, "alpha": str(model.alpha), "context_frames": str(CONTEXT_FRAMES),
            "metrics": json.dumps(metrics or {}, default=float)}
    return write_safetensors(path, state, meta)


def load_motion(path: str | Path) -> LipMotionModel:
    """A model written by :func:`save_motion`; AvsyncError when the file is not one."""
    from safetensors.numpy import load_file

    from avsync.errors import AvsyncError
    from avsync.train.checkpoint import raw_metadata

    p = Path(path)
    if not p.is_file():
        raise AvsyncError(f"lip motion model not found: {p}")
    meta = raw_metadata(p, MOTION_FORMAT, "lip motion")
    if int(meta.get("context_frames", -1)) != CONTEXT_FRAMES:
        raise AvsyncError(f"{p}: made with {meta.get('context_frames')} context frames, not {CONTEXT_FRAMES}")
    t = load_file(str(p))
    return LipMotionModel(t["mean_x"], t["scale_x"], t["weights"], float(meta["alpha"]))
