"""A video file -> offset / LSE-D / LSE-C with a peer model (SyncNet v2 or the Wav2Lip expert).

1. avsync's face analysis (landmarks, tracks split at shot cuts) on the usual downscaled frames.
2. Each track long enough is resampled to 25 fps (crops.resample_indices); its boxes are mapped
   to S3FD framing (crops.s3fd_like_box) or, with S3FD weights, replaced by the S3FD detection
   that overlaps them best (IoU >= 0.3; the mapped box where none does).
3. A second decode at full resolution cuts the crops (crops.syncnet_crop / crops.expert_crop).
4. Audio from the track's first frame time, 640 samples per grid frame; evaluate.syncnet_offset /
   evaluate.expert_offset per track.

File-level numbers: offset from the track with the highest confidence; LSE-D and LSE-C the mean
over the scored tracks (Wav2Lip's scores_LSE averages its per-track lines the same way).
The input file is only read.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avsync.errors import AvsyncError, NoFaceError
from avsync.face.landmarks import DEFAULT_BACKEND
from avsync.peers.crops import (
    EXPERT_CROP_PX,
    SYNCNET_CROP_PX,
    expert_crop,
    resample_indices,
    s3fd_like_box,
    syncnet_crop,
    syncnet_framing,
)
from avsync.peers.evaluate import (
    PEER_FPS,
    SAMPLES_PER_PEER_FRAME,
    WINDOW_FRAMES,
    PeerScore,
    expert_offset,
    syncnet_offset,
)
from avsync.types import SyncResult, TrackResult

S3FD_MATCH_IOU: float = 0.3
MAX_CROP_FRAMES: int = 9000
"""At most this many 25 fps track frames per file (6 min of one face): the crops are held in memory
(SyncNet: 150 kB per frame, 1.35 GB at the limit)."""
SYNCNET_RELIABLE_LSE_C: float = 3.0
"""SyncNet confidence (LSE-C) from which a syncnet_v2 result is called reliable: the cut-off that
SyncNet-based data filters commonly use; not measured here (no real weights)."""


@dataclass
class PeerSyncResult(SyncResult):
    """SyncResult of a peer model. ``confidence`` is the model's own (SyncNet: LSE-C, median - min
    distance; expert: the same statistic on 1 - cosine similarity), not avsync's z-score.
    lse_d / lse_c: paper-comparable SyncNet LSE-D / LSE-C (None for the expert).
    peer: model, weights file, crop source, per-track numbers."""

    lse_d: float | None = None
    lse_c: float | None = None
    peer: dict = field(default_factory=dict)


@dataclass
class _Plan:
    track: object
    frames: np.ndarray  # (K,) source frame index of each 25 fps grid frame
    boxes: np.ndarray  # (K, 4) boxes in full-resolution pixels
    t0_s: float
    from_s3fd: np.ndarray = None  # (K,) bool
    crops: np.ndarray = None


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lo, hi = np.maximum(a[..., :2], b[..., :2]), np.minimum(a[..., 2:4], b[..., 2:4])
    inter = np.prod(np.maximum(0.0, hi - lo), -1)
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-9)


def _by_frame(plans: list[_Plan]) -> dict[int, list[tuple[_Plan, int]]]:
    need: dict[int, list[tuple[_Plan, int]]] = {}
    for plan in plans:
        for k, n in enumerate(plan.frames):
            need.setdefault(int(n), []).append((plan, k))
    return need


def _apply_s3fd(path: Path, plans: list[_Plan], net) -> None:
    from avsync.io import iter_video_frames
    from avsync.peers.s3fd import detect_faces

    need = _by_frame(plans)
    for frame in iter_video_frames(path, max_side=None):
        if frame.index not in need:
            continue
        dets = detect_faces(net, frame.image)
        for plan, k in need[frame.index]:
            if len(dets):
                iou = _iou(dets[:, :4], plan.boxes[k][None])
                j = int(np.argmax(iou))
                if iou[j] >= S3FD_MATCH_IOU:
                    plan.boxes[k] = dets[j, :4]
                    plan.from_s3fd[k] = True


def _cut_crops(path: Path, plans: list[_Plan], expert: bool) -> None:
    from avsync.io import iter_video_frames

    side = EXPERT_CROP_PX if expert else SYNCNET_CROP_PX
    for plan in plans:
        plan.crops = np.zeros((len(plan.frames), side, side, 3), np.uint8)
    framing = {id(p): syncnet_framing(p.boxes) for p in plans} if not expert else {}
    need = _by_frame(plans)
    for frame in iter_video_frames(path, max_side=None):
        if frame.index not in need:
            continue
        bgr = np.ascontiguousarray(frame.image[..., ::-1])
        for plan, k in need[frame.index]:
            plan.crops[k] = (expert_crop(bgr, plan.boxes[k]) if expert
                             else syncnet_crop(bgr, *framing[id(plan)][k]))


def _full_width(path: Path) -> int:
    """Width of the displayed (rotation applied) full-resolution frames."""
    from avsync.io import iter_video_frames

    frames = iter_video_frames(path, max_side=None)
    try:
        return int(next(frames).image.shape[1])
    finally:
        frames.close()


def _segment(audio, t0_s: float, n_frames: int) -> np.ndarray:
    """Audio from ``t0_s`` (container clock), at most n_frames * 640 samples; silence before the
    audio starts."""
    start = int(round((t0_s - audio.start_s) * audio.sample_rate_hz))
    want = n_frames * SAMPLES_PER_PEER_FRAME
    lead = np.zeros(max(0, -start), np.float32)
    return np.concatenate([lead, audio.samples[max(0, start): max(0, start) + want - len(lead)]])


def detect_peer(path: str | Path, model_name: str, model, s3fd_net=None, *, weights: str = "",
                max_offset_frames: int = 15, max_faces: int = 4, face_backend: str = DEFAULT_BACKEND,
                on_frame: Callable[[int], None] | None = None) -> PeerSyncResult:
    """Offset (and LSE-D/LSE-C for SyncNet) of one file with a loaded peer model (see module doc)."""
    from avsync.inference import MIN_TRACK_FRAMES, analyse_video
    from avsync.io import load_audio, probe
    from avsync.timing import frames_to_ms

    path = Path(path)
    expert = model_name == "wav2lip_expert"
    info = probe(path)
    if not info.has_video or not info.has_audio:
        raise AvsyncError(f"{path}: the file needs a video and an audio stream")
    clock: dict[str, float] = {"decode": 0.0}
    t0 = time.perf_counter()
    audio = load_audio(path)
    analysis = analyse_video(path, max_faces=max_faces, on_frame=on_frame, clock=clock,
                             face_backend=face_backend)
    fps = info.fps if info.fps and info.fps > 0 else PEER_FPS
    scale = _full_width(path) / max(1, analysis.image_size[0])  # analysed -> full-resolution pixels
    plans = []
    for track in analysis.tracks:
        if track.n_frames < MIN_TRACK_FRAMES:
            continue
        pos = resample_indices(np.asarray(track.time_s, np.float64))
        boxes = s3fd_like_box(np.asarray(track.boxes, np.float64)[pos]) * scale
        plans.append(_Plan(track, np.asarray(track.frame_index)[pos], boxes, float(track.time_s[0]),
                           np.zeros(len(pos), bool)))
    if not plans:
        raise NoFaceError(f"{path}: no face stays in view for {MIN_TRACK_FRAMES} frames or more")
    if sum(len(p.frames) for p in plans) > MAX_CROP_FRAMES:
        raise AvsyncError(f"{path}: {model_name} holds every face crop in memory and takes at most "
                          f"{MAX_CROP_FRAMES} track frames at 25 fps ({MAX_CROP_FRAMES / PEER_FPS / 60:.0f} "
                          "min of one face); cut the video into parts")
    t1 = time.perf_counter()
    if s3fd_net is not None:
        _apply_s3fd(path, plans, s3fd_net)
    clock["s3fd"] = time.perf_counter() - t1
    _cut_crops(path, plans, expert)
    clock["crops"] = time.perf_counter() - t1 - clock["s3fd"]
    t2 = time.perf_counter()
    scored: list[tuple[_Plan, PeerScore]] = []
    for plan in plans:
        seg = _segment(audio, plan.t0_s, len(plan.frames))
        try:
            score = (expert_offset if expert else syncnet_offset)(model, plan.crops, seg, max_offset_frames)
        except ValueError:
            continue  # shorter than one window of face and audio
        scored.append((plan, score))
        plan.crops = None
    clock["scoring"] = time.perf_counter() - t2
    if not scored:
        raise NoFaceError(f"{path}: no face track has {WINDOW_FRAMES + 1} frames at 25 fps with audio")
    best = max(range(len(scored)), key=lambda i: scored[i][1].lse_c)
    tracks = []
    for i, (plan, sc) in enumerate(scored):
        ms = frames_to_ms(sc.offset_frames, PEER_FPS)
        tracks.append(TrackResult(plan.track.track_id, plan.track.shot, plan.track.start_s,
                                  plan.track.end_s, plan.track.n_frames,
                                  int(round(ms * fps / 1000.0)), round(ms, 1), round(sc.lse_c, 4),
                                  speaking=i == best))
    bs = scored[best][1]
    offset_ms = frames_to_ms(bs.offset_frames, PEER_FPS)
    lse_d = float(np.mean([s.lse_d for _, s in scored]))
    lse_c = float(np.mean([s.lse_c for _, s in scored]))
    clock["total"] = time.perf_counter() - t0
    peer = {
        "model": model_name, "weights": str(weights), "fps": PEER_FPS,
        "crop_boxes": "s3fd" if s3fd_net is not None else "landmarker (mapped to S3FD framing)",
        "offset_frames_25fps": bs.offset_frames,
        "tracks": [{"track_id": p.track.track_id, "offset_frames_25fps": s.offset_frames,
                    "lse_d": round(s.lse_d, 4), "lse_c": round(s.lse_c, 4), "windows": s.n_windows,
                    **({"sync_prob": round(s.sync_prob, 4)} if s.sync_prob is not None else {}),
                    **({"s3fd_box_fraction": round(float(p.from_s3fd.mean()), 3)}
                       if s3fd_net is not None else {})}
                   for p, s in scored],
    }
    reliable = (not expert) and bs.lse_c >= SYNCNET_RELIABLE_LSE_C
    return PeerSyncResult(
        path=str(path), method=model_name, fps=round(float(fps), 4),
        duration_s=round(float(info.duration_s), 3),
        offset_frames=int(round(offset_ms * fps / 1000.0)), offset_ms=round(offset_ms, 1),
        confidence=round(bs.lse_c, 4), in_sync=abs(bs.offset_frames) <= 1, reliable=reliable,
        tracks=tracks,
        curve={"offset_frames": [int(s) for s in range(-max_offset_frames, max_offset_frames + 1)],
               "score": [round(-float(x), 5) if math.isfinite(x) else None for x in bs.mean_dist]},
        timings_s={k: round(v, 3) for k, v in clock.items()},
        lse_d=None if expert else round(lse_d, 4), lse_c=None if expert else round(lse_c, 4), peer=peer)
