"""Image-quality levers of the lip generator: artefact-free resizing, the lip-motion model, the warp."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from avsync.lipgen.generate import checkerboard, resize_frames
from avsync.lipgen.motion import (
    CONTEXT_FRAMES,
    clip_targets,
    fit_motion,
    frame_features,
    motion_frames,
    warp_identity,
)


def test_resize_removes_the_checkerboard_and_keeps_smooth_content() -> None:
    yy, xx = np.mgrid[0:64, 0:64]
    smooth = np.repeat(((xx + yy) * 1.0)[None, ..., None], 3, axis=-1).astype(np.uint8)
    grid = np.where((xx + yy) % 2 == 0, 12, -12)[None, ..., None]
    frames = np.clip(smooth.astype(int) + 100 + grid, 0, 255).astype(np.uint8)
    assert checkerboard(frames) > 10 and checkerboard(smooth) < 0.5
    ours = resize_frames(frames, 256)
    naive = np.stack([cv2.resize(f, (256, 256), interpolation=cv2.INTER_CUBIC) for f in frames])
    ref = np.stack([cv2.resize(f, (256, 256), interpolation=cv2.INTER_CUBIC) for f in smooth]) + 100
    assert ours.shape == (1, 256, 256, 3) and ours.dtype == np.uint8
    inner = (slice(None), slice(8, -8), slice(8, -8))
    assert np.abs(ours[inner].astype(float) - ref[inner]).mean() < 1.5  # the pattern is gone
    assert np.abs(naive[inner].astype(float) - ref[inner]).mean() > 4  # a plain resize keeps it
    small = resize_frames(frames, 32)
    assert small.shape == (1, 32, 32, 3)


def _speech_driven_clips(rng: np.random.Generator, n_clips: int = 6, frames: int = 200):
    """Clips whose mouth opening follows the energy of band 5 of a random 'log-mel'."""
    clips = []
    for k in range(n_clips):
        rows = frames * 4 + 40
        logmel = rng.standard_normal((rows, 40)).astype(np.float32)
        row0 = np.arange(frames) * 4 + 8
        energy = np.array([logmel[r : r + 4, 5].mean() for r in row0])
        base = np.stack([np.linspace(16, 48, 40), np.full(40, 32.0)], axis=1)
        lips = np.repeat(base[None], frames, axis=0)
        lips[:, :20, 1] += 3 * energy[:, None]  # inner lips move down with the energy
        lips += rng.normal(0, 0.05, lips.shape)
        clips.append((frame_features(logmel, row0), clip_targets(lips, np.ones(frames, bool)), f"s{k}"))
    return clips


def test_motion_model_learns_speech_driven_lip_motion_on_held_out_speakers() -> None:
    rng = np.random.default_rng(0)
    clips = _speech_driven_clips(rng)
    assert clips[0][0].shape == (200, (2 * CONTEXT_FRAMES + 1) * 2 * 40)
    model, info = fit_motion(clips, holdout_share=0.34)
    assert info["val_err_px"] < 0.5 * info["val_err_zero_px"]  # far better than "no motion"
    fresh = _speech_driven_clips(np.random.default_rng(1), n_clips=1)[0]
    pred = model.predict(fresh[0]).reshape(len(fresh[0]), -1)
    r = np.corrcoef(pred[:, 1], fresh[1][:, 1])[0, 1]  # inner point 0, y
    assert r > 0.8


def _lips() -> np.ndarray:
    """20 inner then 20 outer lip points on ellipses around (32, 32), crop pixels."""
    a = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    inner = np.stack([32 + 10 * np.cos(a), 32 + 2 * np.sin(a)], 1)
    outer = np.stack([32 + 15 * np.cos(a), 32 + 6 * np.sin(a)], 1)
    return np.concatenate([inner, outer])


def test_warp_moves_the_lips_and_keeps_the_texture_elsewhere() -> None:
    img = np.zeros((64, 64, 3), np.uint8)
    img[:] = (180, 120, 100)
    cv2.line(img, (18, 33), (46, 33), (90, 20, 30), 2)  # the lower lip's edge
    img[4:8, 4:8] = 255  # a mark far from the mouth
    lips = _lips()
    moved = lips.copy()
    moved[lips[:, 1] > 32, 1] += 4  # the lower lip moves down 4 px: the mouth opens
    out = warp_identity(img, lips, lips)
    assert np.abs(out.astype(int) - img).max() <= 2  # no motion: (almost) the identity
    out = warp_identity(img, lips, moved)
    assert np.abs(out[4:8, 4:8].astype(int) - 255).max() <= 3  # texture away from the mouth kept

    def dark_row(x: np.ndarray) -> float:
        w = (x[20:50, 26:38, 0] < 140).sum(axis=1)
        return float((np.arange(20, 50) * w).sum() / w.sum())

    assert dark_row(out) - dark_row(img) > 1.5  # the lower lip's edge went down with its points


@pytest.mark.parametrize("ref", [0, None])
def test_motion_frames_shape_and_identity_frame(ref: int | None) -> None:
    rng = np.random.default_rng(2)
    clips = _speech_driven_clips(rng, n_clips=4, frames=60)
    model, _ = fit_motion(clips)
    logmel = rng.standard_normal((300, 40)).astype(np.float32)
    ident = np.full((64, 64, 3), 128, np.uint8)
    lips = _lips()
    out = motion_frames(model, logmel, np.arange(20) * 4 + 8, ident, lips, ref)
    assert out.shape == (20, 64, 64, 3) and out.dtype == np.uint8
    assert np.all(out == 128)  # a flat image stays flat whatever the motion
