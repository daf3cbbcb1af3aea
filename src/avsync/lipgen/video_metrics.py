"""``avsync metrics``: score a (generated) talking-face or lip video, optionally against a reference.

Two kinds of input video:

* a face video (any size): the face pipeline finds the longest face track and cuts the 64 x 64
  aligned RGB mouth crops; lip points come from the face landmarker (in crop pixels);
* a lip video (both sides <= 160 px, no face found, e.g. ``avsync generate`` output): its frames
  are the crops (resized to 64 x 64); lip points come from the landmark network shipped with
  the generator (the one behind LMD in docs/BENCHMARKS.md).

Always: CPBD of the crops, and the sync of the crops with the file's own audio by the project's
SyncNet (LSE-D, LSE-C, offset in frames; > 0 means the audio is late). With ``reference``: LMD,
SSIM and PSNR frame by frame (the first min(T, T_ref) frames; both at the same frame rate).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from avsync.errors import AvsyncError, MediaError, NoFaceError
from avsync.lipgen.generate import LIP_IMAGE_MAX_SIDE
from avsync.lipgen.metrics import cpbd_video, lmd, psnr, ssim, sync_distance_confidence


@dataclass
class CropVideo:
    """crops: (T, 64, 64, 3) uint8; lips: (T, 40, 2) crop pixels (NaN: no face); times_s: (T,);
    fps; source: "face track" or "lip video"."""

    crops: np.ndarray
    lips: np.ndarray
    times_s: np.ndarray
    fps: float
    source: str


def _lip_video(path: Path) -> CropVideo | None:
    from avsync.io import iter_video_frames, probe

    info = probe(path)
    if not info.has_video:
        raise MediaError(f"{path} has no video stream")
    frames, times = [], []
    for f in iter_video_frames(path):
        if max(f.image.shape[:2]) > LIP_IMAGE_MAX_SIDE:
            return None
        frames.append(cv2.resize(f.image, (64, 64), interpolation=cv2.INTER_AREA))
        times.append(f.time_s)
    if not frames:
        raise MediaError(f"{path}: no video frame decodes")
    crops = np.stack(frames)
    return CropVideo(crops, _network_lips(crops), np.asarray(times), info.fps or 25.0, "lip video")


def _network_lips(crops: np.ndarray) -> np.ndarray:
    from avsync.lipgen.bundle import load_bundle
    from avsync.lipgen.evaluate import lip_points
    from avsync.lipgen.generate import DEFAULT_GENERATOR

    if not DEFAULT_GENERATOR.is_file():
        return np.full((len(crops), 40, 2), np.nan, np.float32)
    nets, _ = load_bundle(DEFAULT_GENERATOR, ("landmarks",))
    return lip_points(nets["landmarks"], crops)


def crop_video(path: str | Path) -> CropVideo:
    """The 64 x 64 mouth crops of a video (see the module doc)."""
    from avsync.inference import MIN_TRACK_FRAMES, analyse_video

    p = Path(path)
    small = _lip_video(p)
    if small is not None:
        return small
    analysis = analyse_video(p, keep_crops=True, rgb_crop_size=64, max_faces=1)
    tracks = [t for t in analysis.tracks if t.n_frames >= MIN_TRACK_FRAMES]
    if not tracks:
        raise NoFaceError(f"{p}: no face stays in view for {MIN_TRACK_FRAMES} frames or more")
    t = max(tracks, key=lambda tr: tr.n_frames)
    times = np.asarray(t.time_s, np.float64)
    fps = float(1.0 / np.median(np.diff(times))) if len(times) > 1 else 25.0
    return CropVideo(np.stack(t.rgb), np.stack(t.lips_px).astype(np.float32), times, fps, "face track")


def sync_of(video: CropVideo, audio_path: str | Path) -> dict[str, float]:
    """LSE-D / LSE-C / offset of the crops against the audio of ``audio_path`` (SyncNet)."""
    from avsync.features import log_mel
    from avsync.io import load_audio
    from avsync.lipgen.evaluate import SYNC_SHIFTS, crop_sync_distances
    from avsync.models.registry import create_model

    audio = load_audio(audio_path)
    dist = crop_sync_distances(video.crops, video.times_s, video.fps, log_mel(audio.samples), audio.start_s,
                               create_model("syncnet"))
    ok = np.isfinite(dist)
    if not ok.any():
        raise AvsyncError(
            f"{audio_path}: too short to measure sync (needs 5 frames plus the +-15 frame search)"
        )
    d, c = sync_distance_confidence(dist[ok])
    return {"lse_d": d, "lse_c": c, "sync_offset_frames": int(SYNC_SHIFTS[int(np.nanargmin(dist))])}


def video_metrics(path: str | Path, reference: str | Path | None = None, sync: bool = True) -> dict:
    """All metrics of ``path`` (and against ``reference``); a JSON-ready dict."""
    gen = crop_video(path)
    out: dict = {
        "path": str(path),
        "source": gen.source,
        "frames": len(gen.crops),
        "fps": round(gen.fps, 3),
        "cpbd": cpbd_video(gen.crops),
    }
    if sync:
        out.update(sync_of(gen, path))
    if reference is not None:
        ref = crop_video(reference)
        if abs(ref.fps - gen.fps) > 0.01 * gen.fps:
            raise AvsyncError(f"{reference}: {ref.fps:.3g} fps differs from {path}'s {gen.fps:.3g} fps")
        n = min(len(gen.crops), len(ref.crops))
        out.update(
            {"reference": str(reference), "compared_frames": n, "ssim": ssim(gen.crops[:n], ref.crops[:n])}
        )
        value = psnr(gen.crops[:n], ref.crops[:n])
        out["psnr"] = value if np.isfinite(value) else None  # None: identical crops
        gen_lips, ref_lips = gen.lips[:n], ref.lips[:n]
        if gen.source != ref.source:  # one detector for both sides, as the paper does
            gen_lips, ref_lips = _network_lips(gen.crops[:n]), _network_lips(ref.crops[:n])
        out["lips_from"] = (
            "face landmarker" if gen.source == ref.source == "face track" else "landmark network"
        )
        try:
            out["lmd"] = lmd(gen_lips, ref_lips)
        except ValueError:
            out["lmd"] = None  # no lip points (no landmark network shipped, or faces missed)
    return out
