"""Quality metrics for generated talking-mouth video (Chen et al., ECCV 2018, "Lip Movements
Generation at a Glance"): PSNR, SSIM, CPBD sharpness, landmark distance (LMD), and the
LSE-D / LSE-C pair derived from a sync-offset distance curve.

Pixel inputs are RGB (not BGR) or greyscale, uint8 or float, on a ``data_range`` scale (255 by
default). Accepted layouts: ``(H, W)``, ``(H, W, C)`` with C in {1, 3}, ``(T, H, W)`` (a
greyscale video: a 3-D array whose last axis is not 1 or 3) and ``(T, H, W, C)``.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage

__all__ = ["psnr", "ssim", "cpbd", "cpbd_video", "lmd", "sync_distance_confidence"]

# SSIM constants (Wang et al. 2004).
SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # 11x11 window
SSIM_K1, SSIM_K2 = 0.01, 0.03

# CPBD constants (Narvekar & Karam 2011).
CPBD_BLOCK = 64
CPBD_EDGE_BLOCK_FRACTION = 0.002  # a block is an edge block above 0.2 % Canny edge pixels
CPBD_BETA = 3.6
CPBD_P_JNB = 1.0 - math.exp(-1.0)  # 63.2 %: P_BLUR of an edge exactly w_JNB wide
CPBD_MAX_HALF_WIDTH = 101  # the reference stops the extremum search after 100 steps
LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601, as MATLAB rgb2gray / PIL "L"


def _pair(pred: ArrayLike, target: ArrayLike, name: str) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    if p.shape != t.shape:
        raise ValueError(f"{name}: pred shape {p.shape} does not match target shape {t.shape}")
    if p.size == 0:
        raise ValueError(f"{name}: inputs are empty")
    return p, t


def _as_frames(x: np.ndarray, name: str) -> np.ndarray:
    """View an image or video as (N, H, W, C)."""
    if x.ndim == 2:
        return x[None, :, :, None]
    if x.ndim == 3:
        return x[None] if x.shape[-1] in (1, 3) else x[..., None]
    if x.ndim == 4:
        return x
    raise ValueError(f"{name}: expected (H,W), (H,W,C), (T,H,W) or (T,H,W,C), got shape {x.shape}")


def psnr(pred: ArrayLike, target: ArrayLike, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(data_range^2 / MSE)``.

    ``pred`` and ``target`` have the same shape, any of (T,H,W,3), (H,W,3), (H,W) (or any other
    matching shape); values on a scale whose peak-to-peak range is ``data_range`` (255 for
    uint8). One MSE is taken over all pixels of all frames (not a mean of per-frame PSNRs).
    Identical inputs give ``math.inf``.
    """
    p, t = _pair(pred, target, "psnr")
    if data_range <= 0:
        raise ValueError(f"psnr: data_range must be positive, got {data_range}")
    mse = float(np.mean((p - t) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range**2 / mse)


def ssim(pred: ArrayLike, target: ArrayLike, data_range: float = 255.0) -> float:
    """Mean structural similarity (Wang et al. 2004), unitless, at most 1.

    Gaussian 11x11 window (sigma 1.5), K1 = 0.01, K2 = 0.03, population (not sample) variances.
    The SSIM map of each channel of each frame is averaged over the "valid" interior (5 pixels
    in from every border, where the window fits), then over frames and channels; this matches
    ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False)``. Layouts as in the module docstring; H and W must be >= 11.
    """
    p, t = _pair(pred, target, "ssim")
    if data_range <= 0:
        raise ValueError(f"ssim: data_range must be positive, got {data_range}")
    x, y = _as_frames(p, "ssim"), _as_frames(t, "ssim")
    if min(x.shape[1:3]) < 2 * SSIM_RADIUS + 1:
        raise ValueError(f"ssim: frames must be at least 11x11 pixels, got {x.shape[1]}x{x.shape[2]}")
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2

    def blur(a: np.ndarray) -> np.ndarray:  # spatial axes only; the interior is mode-independent
        sig = (0.0, SSIM_SIGMA, SSIM_SIGMA, 0.0)
        return ndimage.gaussian_filter(a, sig, mode="reflect", truncate=SSIM_RADIUS / SSIM_SIGMA)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    smap = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    r = SSIM_RADIUS
    return float(smap[:, r:-r, r:-r, :].mean())


def _grey_levels(image: ArrayLike) -> np.ndarray:
    """(H,W) or (H,W,1|3) RGB -> (H,W) float luma rounded to the 256 levels of an 8-bit image."""
    a = np.asarray(image, dtype=np.float64)
    if a.ndim == 3 and a.shape[-1] == 3:
        a = a @ LUMA
    elif a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim != 2 or min(a.shape) < 3:
        raise ValueError(f"cpbd: expected an (H,W) or (H,W,3) image of at least 3x3, got shape {a.shape}")
    return np.clip(np.rint(a), 0, 255)


def _canny_edges(grey: np.ndarray) -> np.ndarray:
    """Canny edge map with MATLAB's automatic thresholds: Gaussian pre-smoothing (sigma sqrt 2);
    high threshold where 70 % of the pixels fall in a 64-bin histogram of the gradient magnitude
    (relative to its peak), low = 0.4 * high."""
    smooth = cv2.GaussianBlur(grey.astype(np.uint8), (0, 0), math.sqrt(2.0))
    mag = np.hypot(cv2.Sobel(smooth, cv2.CV_32F, 1, 0), cv2.Sobel(smooth, cv2.CV_32F, 0, 1))
    peak = float(mag.max())
    if peak <= 0.0:
        return np.zeros(grey.shape, dtype=bool)
    counts, _ = np.histogram(mag / peak, bins=64, range=(0.0, 1.0))
    high = (int(np.argmax(np.cumsum(counts) > 0.7 * mag.size)) + 1) / 64.0 * peak
    return cv2.Canny(smooth, 0.4 * high, high, L2gradient=True) > 0


def _vertical_sobel_edges(grey: np.ndarray) -> np.ndarray:
    """Vertical edges as MATLAB ``edge(I, 'sobel', [], 'vertical')``: squared horizontal Sobel
    response b above 4x its mean, thinned to pixels where b is a local maximum along the row or
    along the column (ties go to the left / upper pixel, so ideal 2-pixel steps are kept)."""
    kx = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8.0
    b = ndimage.correlate(grey, kx, mode="nearest") ** 2
    cutoff = 4.0 * float(b.mean())
    if cutoff <= 0.0:
        return np.zeros(grey.shape, dtype=bool)
    p = np.pad(b, 1)
    row_max = (b > p[1:-1, :-2]) & (b >= p[1:-1, 2:])
    col_max = (b > p[:-2, 1:-1]) & (b >= p[2:, 1:-1])
    return (b > cutoff) & (row_max | col_max)


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the length of the run of True ending at / starting at each column."""
    ending, starting = np.zeros(mask.shape, np.int64), np.zeros(mask.shape, np.int64)
    acc = np.zeros(mask.shape[0], np.int64)
    for k in range(mask.shape[1]):
        acc = (acc + 1) * mask[:, k]
        ending[:, k] = acc
    acc = np.zeros(mask.shape[0], np.int64)
    for k in range(mask.shape[1] - 1, -1, -1):
        acc = (acc + 1) * mask[:, k]
        starting[:, k] = acc
    return ending, starting


def _marziliano_widths(grey: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Edge width in pixels (0 = not measured) at each edge pixel whose gradient is horizontal
    (angle quantised to 45 degrees is 0 or 180): the distance between the intensity extrema met
    walking left and right along the row from the edge pixel (Marziliano et al. 2002)."""
    h, w = grey.shape
    gy, gx = np.gradient(grey)
    quant = 45.0 * np.round(np.degrees(np.arctan2(gy, gx)) / 45.0)
    rising = (quant == 0) & (gx > 0)  # zero-gradient pixels have no direction: skipped
    falling = np.abs(quant) == 180
    inner = np.zeros((h, w), dtype=bool)
    inner[1:-1, 1:-1] = True
    edges = edges & inner
    d = np.diff(grey, axis=1)  # d[:, k] = I[:, k+1] - I[:, k]
    widths = np.zeros((h, w), np.int64)
    for select, mono in ((rising, d > 0), (falling, d < 0)):
        ending, starting = _runs(mono)
        # left extremum: the monotone run of d ending at col-2; right: the run starting at col+1
        left, right = np.zeros((h, w), np.int64), np.zeros((h, w), np.int64)
        left[:, 2:] = ending[:, : w - 2]
        right[:, : w - 2] = starting[:, 1:]
        left = np.minimum(left, CPBD_MAX_HALF_WIDTH - 1) + 1
        right = np.minimum(right, CPBD_MAX_HALF_WIDTH - 1) + 1
        sel = edges & select
        widths[sel] = (left + right)[sel]
    return widths


def _block_spans(n: int) -> list[tuple[int, int]]:
    if n < CPBD_BLOCK:  # a crop smaller than one block is one block
        return [(0, n)]
    return [(s, s + CPBD_BLOCK) for s in range(0, n - CPBD_BLOCK + 1, CPBD_BLOCK)]


def cpbd(image: ArrayLike) -> float:
    """No-reference sharpness: cumulative probability of blur detection (Narvekar & Karam 2011).

    ``image``: (H,W) greyscale or (H,W,3) RGB, uint8 or float on a 0..255 scale; RGB is reduced
    to BT.601 luma and rounded to 8-bit levels. Returns a unitless fraction in [0, 1] (higher is
    sharper): over the edge pixels of the 64x64 edge blocks, the share whose probability of blur
    detection ``1 - exp(-(w / w_JNB)^3.6)`` is at most P_JNB = 1 - 1/e (about 63 %), where w is
    the edge width in pixels and w_JNB is 5 if the block contrast max - min <= 50, else 3.
    Trailing strips narrower than 64 pixels are ignored, as in the reference code, except that an
    image under 64 pixels along an axis is one block along it. 0.0 when there is no edge.
    With P_JNB = 1 - 1/e the test is exactly w <= w_JNB (what the reference's rounded histogram
    counts); a literal 0.63 would drop edges exactly w_JNB wide. Edge blocks come from Canny,
    widths from thinned vertical-Sobel edges (see the helpers for the MATLAB defaults used).
    """
    grey = _grey_levels(image)
    canny = _canny_edges(grey)
    widths = _marziliano_widths(grey, _vertical_sobel_edges(grey))
    sharp = total = 0
    for r0, r1 in _block_spans(grey.shape[0]):
        for c0, c1 in _block_spans(grey.shape[1]):
            block_edges = canny[r0:r1, c0:c1]
            if np.count_nonzero(block_edges) <= CPBD_EDGE_BLOCK_FRACTION * block_edges.size:
                continue
            w = widths[r0:r1, c0:c1]
            w = w[w > 0].astype(np.float64)
            block = grey[r0:r1, c0:c1]
            w_jnb = 5.0 if block.max() - block.min() <= 50 else 3.0
            p_blur = 1.0 - np.exp(-((w / w_jnb) ** CPBD_BETA))
            sharp += int(np.count_nonzero(p_blur <= CPBD_P_JNB + 1e-9))
            total += w.size
    return sharp / total if total else 0.0


def cpbd_video(frames: ArrayLike) -> float:
    """Mean :func:`cpbd` over the frames of a (T,H,W,3) RGB or (T,H,W) greyscale video."""
    v = np.asarray(frames)
    if v.ndim not in (3, 4) or v.shape[0] == 0:
        raise ValueError(f"cpbd_video: expected a non-empty (T,H,W) or (T,H,W,3) video, got shape {v.shape}")
    return float(np.mean([cpbd(f) for f in v]))


def lmd(pred_landmarks: ArrayLike, target_landmarks: ArrayLike) -> float:
    """Landmark distance (Chen et al. 2018, eq. 5), in pixels.

    Inputs are (T, P, 2) pixel coordinates of P corresponding landmarks over T frames. In each
    frame both sets are centred on their own mean point, then the Euclidean distance between
    corresponding points is averaged over points and frames. Frames with a NaN in either set are
    skipped; if every frame is skipped a ValueError is raised.
    """
    p, t = _pair(pred_landmarks, target_landmarks, "lmd")
    if p.ndim != 3 or p.shape[-1] != 2:
        raise ValueError(f"lmd: expected (T, P, 2) landmark arrays, got shape {p.shape}")
    ok = ~(np.isnan(p).any(axis=(1, 2)) | np.isnan(t).any(axis=(1, 2)))
    if not ok.any():
        raise ValueError("lmd: every frame has a NaN landmark, so there is nothing to compare")
    pc = p[ok] - p[ok].mean(axis=1, keepdims=True)
    tc = t[ok] - t[ok].mean(axis=1, keepdims=True)
    return float(np.linalg.norm(pc - tc, axis=-1).mean())


def sync_distance_confidence(curve_distances: ArrayLike) -> tuple[float, float]:
    """LSE-D and LSE-C (SyncNet style) from a distance-versus-offset curve.

    ``curve_distances``: 1-D array, for each candidate audio-video shift, the mean distance
    between audio and video embeddings (unitless, lower = better aligned). Returns
    ``(min distance, median - min)``: LSE-D is the minimum, LSE-C the confidence. The median is
    the lower middle value for an even count, as ``torch.median`` in syncnet_python (with the
    usual 31 shifts, +-15 frames, it is the ordinary median).
    """
    d = np.asarray(curve_distances, dtype=np.float64)
    if d.ndim != 1 or d.size == 0:
        raise ValueError(f"sync_distance_confidence: expected a non-empty 1-D array, got shape {d.shape}")
    if not np.all(np.isfinite(d)):
        raise ValueError("sync_distance_confidence: the distance curve contains NaN or infinite values")
    low = float(d.min())
    median = float(np.sort(d)[(d.size - 1) // 2])
    return low, median - low
