"""Dense vertical optical flow of mouth crops: the visual feature of WLOS / C3.

Kikuchi & Ozasa ("Watch, Listen Once, and Sync") feed their visual network the vertical
component of the Farneback optical flow between consecutive 32x32 lip crops (lips move
mostly up and down when speaking, as in Liu & Sato). Here the crops are the project's
(T, 48, 48) grey mouth crops of one face track, resized to ``size`` x ``size`` with
``cv2.INTER_AREA`` before the flow.

Flow values are in pixels of the ``size`` x ``size`` image per frame, positive = downward
motion (OpenCV's image y axis). Frame t holds the flow from frame t - 1 to frame t, so frame 0
has none (zeros, and ``flow_valid`` marks it invalid).
"""

from __future__ import annotations

import cv2
import numpy as np

FLOW_SIZE: int = 32
"""Side of the square crop the flow is computed on (the paper's 32x32 lip area)."""

# Farneback parameters for a 32x32 image. Lip motion between 25 fps frames is a few pixels of
# a 48 px crop (1-3 px at 32 px): two pyramid levels (32 and 16 px) cover that range, a coarser
# level (8 px) would hold almost no texture. A 7 px averaging window is large enough to be
# stable on the smooth mouth texture and small enough to keep the upper and lower lip apart.
FARNEBACK_PYR_SCALE: float = 0.5
"""Image scale between pyramid levels."""
FARNEBACK_LEVELS: int = 2
"""Pyramid levels (including the full-resolution one)."""
FARNEBACK_WINSIZE: int = 7
"""Averaging window (pixels)."""
FARNEBACK_ITERATIONS: int = 3
"""Iterations per pyramid level."""
FARNEBACK_POLY_N: int = 5
"""Pixel neighbourhood of the polynomial expansion."""
FARNEBACK_POLY_SIGMA: float = 1.1
"""Gaussian sigma of the polynomial expansion (1.1 suits poly_n = 5)."""
FARNEBACK_FLAGS: int = 0
"""Box averaging window: the Gaussian one (OPTFLOW_FARNEBACK_GAUSSIAN) gave 2-5x larger outliers
on a 32 px image with a known motion."""
FLOW_PAD: int = 4
"""Border (pixels, replicated) added around each resized crop before the flow, then cropped
away. OpenCV's Farneback treats the last row / column as "outside" and returns spurious flow
there (up to 0.3 px, 1.4 px with the Gaussian window, between two IDENTICAL 32 px images);
padding moves that artefact out of the kept image (static input -> exactly 0)."""

FLOW_SCALE: float = 1.0
"""Fixed normalisation of the vertical flow (pixels of the 32x32 crop per frame).

On the project's training cache (20 tracks, 48 px crops resized to 32) the per-pixel vertical
flow has std 0.59 px, median |dy| 0.20 px and 99th percentile 2.3 px, so ``flow / FLOW_SCALE`` is
of order 1 and the clip at +-3 only cuts tracking glitches (head jerks, bad crops).
"""

FLOW_CLIP: float = 3.0
"""Normalised flow is clipped to [-FLOW_CLIP, FLOW_CLIP]."""


def _resize(mouth: np.ndarray, size: int) -> np.ndarray:
    if mouth.shape[1:] == (size, size):
        return np.ascontiguousarray(mouth)
    return np.stack([cv2.resize(m, (size, size), interpolation=cv2.INTER_AREA) for m in mouth])


def vertical_flow(mouth: np.ndarray, size: int = FLOW_SIZE) -> np.ndarray:
    """Vertical Farneback flow between consecutive mouth crops.

    mouth: (T, H, W) uint8 grey crops of one face track, consecutive frames (the project's crops
    are 48x48). Each is resized to ``size`` x ``size`` (INTER_AREA) first.

    Returns (T, size, size) float32: frame t is the vertical flow (dy, pixels of the resized
    image, positive = downward) from frame t - 1 to frame t; frame 0 is zeros. Invalid frames
    (no face) are not special-cased: mask the result with ``flow_valid``.
    """
    mouth = np.asarray(mouth)
    if mouth.ndim != 3:
        raise ValueError(f"mouth must be (T, H, W), got shape {mouth.shape}")
    if mouth.dtype != np.uint8:
        mouth = np.clip(mouth, 0, 255).astype(np.uint8)
    out = np.zeros((len(mouth), size, size), np.float32)
    if len(mouth) < 2:
        return out
    p = FLOW_PAD
    small = [cv2.copyMakeBorder(m, p, p, p, p, cv2.BORDER_REPLICATE) for m in _resize(mouth, size)]
    for t in range(1, len(small)):
        flow = cv2.calcOpticalFlowFarneback(
            small[t - 1], small[t], None, FARNEBACK_PYR_SCALE, FARNEBACK_LEVELS, FARNEBACK_WINSIZE,
            FARNEBACK_ITERATIONS, FARNEBACK_POLY_N, FARNEBACK_POLY_SIGMA, FARNEBACK_FLAGS)
        out[t] = flow[p:p + size, p:p + size, 1]
    return out


def lip_flow(mouth: np.ndarray, size: int = FLOW_SIZE) -> np.ndarray:
    """(T, H, W) grey mouth crops -> (T, size, size) float32 normalised vertical flow, the input
    of the lip-flow models: ``normalise_flow(vertical_flow(mouth))``."""
    return normalise_flow(vertical_flow(np.asarray(mouth, np.uint8), size))


def reuse_flow(root_flow: np.ndarray, ids: np.ndarray, mouth: np.ndarray) -> np.ndarray:
    """``lip_flow(mouth)`` for crops cut or rolled from a track whose
    normalised flow is already known, without running Farneback again.

    root_flow: (N, size, size) normalised flow of the whole track; ids: (T,) index in the track
    of each of the T frames of ``mouth`` (T, H, W). Frame i whose predecessor is the track's
    previous frame (ids[i] == ids[i-1] + 1) takes the track's flow; the others (a roll's seam)
    are computed from the two crops; frame 0 is zeros. Identical to computing it afresh, since
    the flow of frame t depends only on crops t - 1 and t.
    """
    ids = np.asarray(ids, np.int64)
    out = np.zeros((len(ids), *root_flow.shape[1:]), np.float32)
    if len(ids) < 2:
        return out
    follows = np.zeros(len(ids), bool)
    follows[1:] = ids[1:] == ids[:-1] + 1
    out[follows] = root_flow[ids[follows]]
    for i in np.flatnonzero(~follows[1:]) + 1:
        out[i] = lip_flow(mouth[i - 1:i + 1], root_flow.shape[1])[1]
    return out


def flow_valid(valid: np.ndarray) -> np.ndarray:
    """(T,) bool: frame t's flow is valid when frames t - 1 and t both are; frame 0 never is."""
    valid = np.asarray(valid, bool)
    out = np.zeros(valid.shape, bool)
    out[1:] = valid[1:] & valid[:-1]
    return out


def normalise_flow(flow: np.ndarray) -> np.ndarray:
    """Flow in pixels -> float32 ``flow / FLOW_SCALE`` clipped to [-3, 3].

    Deviation from the paper, which rescales the flow to [0, 1] per mini-batch: that makes the
    features of one window depend on the other windows of its batch (and on the batch size),
    so a single window at inference would not see what training saw. A fixed scale keeps every
    window independent and keeps 0 = no motion (the sign of the motion is preserved).
    """
    x = np.asarray(flow, np.float32) / np.float32(FLOW_SCALE)
    return np.nan_to_num(np.clip(x, -FLOW_CLIP, FLOW_CLIP), nan=0.0).astype(np.float32, copy=False)
