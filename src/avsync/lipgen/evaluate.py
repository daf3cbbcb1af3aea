"""Evaluation of lip generation on held-out speakers (the paper's protocol, adapted).

For every validation clip of the generation cache (speakers never seen in training): the
identity image is the clip's first detected frame, the speech is the clip's own audio, and the
whole clip is generated (16-frame windows every 8 frames, blended). Against the real crops:
LMD (lip points by the landmark network on both, centred; crop pixels), SSIM, PSNR; on the
generated crops alone: CPBD; and the sync of generated lips with the speech measured by the
project's SyncNet (LSE-D: minimum of the mean embedding distance over -15..15 frames; LSE-C:
median minus minimum; offset: the minimising shift). Rows: ground truth, the identity image
repeated, and any generator bundles (e.g. reconstruction-only and the full model).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

from avsync.lipgen.critics import LipLandmarkNet
from avsync.lipgen.generate import generate_frames
from avsync.lipgen.metrics import cpbd_video, lmd, psnr, ssim
from avsync.lipgen.windows import GenClip, load_gen_clip, to_video_tensor

SYNC_SHIFTS = np.arange(-15, 16)

Maker = Callable[[GenClip, np.ndarray, np.ndarray], np.ndarray]
"""(clip, identity (64, 64, 3) uint8, log-mel from the clip's frame 0) -> (T, 64, 64, 3) uint8."""


def clip_logmel(clip: GenClip) -> np.ndarray:
    """The clip's standardised log-mel re-based so that frame k gets rows 4k-2 .. 4k+1."""
    offset = int(clip.row0[0]) + 2
    if offset >= 0:
        return clip.audio[offset:]
    return np.concatenate([np.repeat(clip.audio[:1], -offset, axis=0), clip.audio])


def generator_maker(generator: torch.nn.Module) -> Maker:
    return lambda clip, ident, logmel: generate_frames(generator, logmel, ident, len(clip.rgb))


def repeat_maker(clip: GenClip, ident: np.ndarray, _logmel: np.ndarray) -> np.ndarray:
    return np.repeat(ident[None], len(clip.rgb), axis=0)


def truth_maker(clip: GenClip, _ident: np.ndarray, _logmel: np.ndarray) -> np.ndarray:
    return clip.rgb


@torch.no_grad()
def lip_points(net: LipLandmarkNet, frames: np.ndarray, batch: int = 256) -> np.ndarray:
    """(T, 64, 64, 3) uint8 -> (T, 40, 2) lip points (crop pixels) by the landmark network."""
    out = []
    for i in range(0, len(frames), batch):
        x = to_video_tensor(frames[i : i + batch])  # (3, t, 64, 64)
        out.append(net(x.transpose(0, 1)).numpy())
    return np.concatenate(out)


def crop_sync_distances(crops: np.ndarray, times_s: np.ndarray, fps: float, logmel: np.ndarray,
                        audio_start_s: float, sync_method) -> np.ndarray:
    """Mean SyncNet embedding distance of RGB mouth crops (T, 64, 64, 3) against the speech at
    every shift of SYNC_SHIFTS, (31,) (NaN where the shifted audio leaves the recording).

    The 64 x 64 crops have the sync cache's framing (mouth = half the width), so a grey 48 x 48
    resize is what SyncNet was trained on. logmel: (N, 40) natural-log mel power whose row 0 is at
    ``audio_start_s``."""
    from avsync.models.neural import NeuralInput

    grey = np.stack([cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), (48, 48), interpolation=cv2.INTER_AREA)
                     for f in crops])
    ninp = NeuralInput(fps, np.asarray(times_s, np.float64), grey, None, None,
                       np.asarray(logmel, np.float32), float(audio_start_s))
    return sync_method.distances(ninp, SYNC_SHIFTS)


def sync_scores(frames: np.ndarray, npz_path: str | Path, sync_method) -> dict[str, float]:
    """LSE-D, LSE-C and offset of generated 25 fps crops against the clip's speech."""
    from avsync.data.cache import load_clip_cache
    from avsync.lipgen.metrics import sync_distance_confidence
    from avsync.lipgen.model import GEN_FPS

    d = load_clip_cache(npz_path)
    times = d["frame_times_s"][0] + np.arange(len(frames)) / GEN_FPS
    dist = crop_sync_distances(frames, times, GEN_FPS, d["logmel"], d["audio_start_s"], sync_method)
    if not np.isfinite(dist).any():
        return {"lse_d": float("nan"), "lse_c": float("nan"), "sync_offset": float("nan")}
    lse_d, lse_c = sync_distance_confidence(dist[np.isfinite(dist)])
    return {"lse_d": lse_d, "lse_c": lse_c, "sync_offset": float(SYNC_SHIFTS[int(np.nanargmin(dist))])}


def evaluate_clip(
    path: str | Path, makers: dict[str, Maker], landmarks: LipLandmarkNet, sync_method=None
) -> dict[str, dict[str, float]]:
    """Metrics of every maker on one cached clip; {maker: {metric: value, "frames": n}}."""
    clip = load_gen_clip(path)
    ok = np.flatnonzero(clip.valid)
    if len(ok) < 16:
        return {}
    ident, logmel = clip.rgb[ok[0]], clip_logmel(clip)
    truth = clip.rgb[ok]
    truth_pts = lip_points(landmarks, truth)
    out = {}
    for name, make in makers.items():
        t0 = time.perf_counter()
        frames = make(clip, ident, logmel)
        seconds = time.perf_counter() - t0
        gen = frames[ok]
        row = {
            "frames": float(len(ok)),
            "ssim": ssim(gen, truth),
            "psnr": min(psnr(gen, truth), 99.0),  # 99: identical (ground truth row)
            "cpbd": cpbd_video(gen),
            "lmd": lmd(lip_points(landmarks, gen), truth_pts),
            "gen_fps": len(frames) / max(seconds, 1e-9),
        }
        if sync_method is not None:
            row.update(sync_scores(frames, path, sync_method))
        out[name] = row
    return out


def aggregate(per_clip: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Frame-weighted means of the image metrics, clip means of the sync metrics,
    |sync offset| <= 1 share ("sync_ok")."""
    table: dict[str, dict[str, float]] = {}
    names = {n for c in per_clip for n in c}
    for name in sorted(names):
        rows = [c[name] for c in per_clip if name in c]
        w = np.array([r["frames"] for r in rows])
        entry = {"clips": float(len(rows)), "frames": float(w.sum())}
        for key in ("ssim", "psnr", "cpbd", "lmd"):
            entry[key] = float(np.average([r[key] for r in rows], weights=w))
        for key in ("lse_d", "lse_c"):
            vals = [r[key] for r in rows if key in r and np.isfinite(r[key])]
            if vals:
                entry[key] = float(np.mean(vals))
        offs = [r["sync_offset"] for r in rows if "sync_offset" in r and np.isfinite(r["sync_offset"])]
        if offs:
            entry["sync_ok"] = float(np.mean(np.abs(offs) <= 1))
        table[name] = entry
    return table


def markdown_table(table: dict[str, dict[str, float]], order: list[str] | None = None) -> str:
    cols = [
        ("lmd", "LMD (px) ↓", 2),
        ("ssim", "SSIM ↑", 3),
        ("psnr", "PSNR (dB) ↑", 2),
        ("cpbd", "CPBD ↑", 3),
        ("lse_d", "LSE-D ↓", 3),
        ("lse_c", "LSE-C ↑", 3),
        ("sync_ok", "sync \\|offset\\|≤1", 2),
    ]
    lines = ["| method | clips | " + " | ".join(c[1] for c in cols) + " |", "|---|---|" + "---|" * len(cols)]
    for name in order or list(table):
        if name not in table:
            continue
        r = table[name]
        cells = ["—" if k not in r else "∞" if k == "psnr" and r[k] >= 99 else f"{r[k]:.{p}f}"
                 for k, _, p in cols]
        lines.append(f"| {name} | {int(r['clips'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
