"""How far avsync's landmarker boxes (mapped to S3FD framing) are from S3FD's own boxes.

Needs the user's sfd_face.pth (syncnet_python's S3FD weights; none exist in this repository):

    PYTHONPATH=src python benchmarks/peers_framing.py --s3fd-weights sfd_face.pth CLIP [CLIP ...]

For every frame of every face track (avsync's tracks, as `avsync detect --method syncnet_v2`
builds them) it runs S3FD as run_pipeline.py does (scale 0.25, score > 0.9) on the full-resolution
frame, matches the detection that overlaps the mapped landmarker box best (IoU >= 0.3), and reports
per clip and over all: the matched fraction, the median centre offset (x, y) in S3FD box sizes,
the median size ratio (landmarker max(w, h) / S3FD max(w, h), the quantity SyncNet's crop scales
with) and the median IoU of the resulting 224x224 SyncNet crop windows. The medians of the centre
offset and the size ratio are what `avsync.peers.crops.LANDMARK_TO_S3FD_*` should be set to.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from avsync.errors import AvsyncError


def _crop_window(box: np.ndarray, cs: float = 0.4) -> np.ndarray:
    s = max(box[2] - box[0], box[3] - box[1]) / 2
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return np.array([cx - s * (1 + cs), cy - s, cx + s * (1 + cs), cy + s * (1 + 2 * cs)])


def measure(path: Path, net) -> dict:
    from avsync.inference import MIN_TRACK_FRAMES, analyse_video
    from avsync.io import iter_video_frames
    from avsync.peers.crops import s3fd_like_box
    from avsync.peers.pipeline import _full_width, _iou
    from avsync.peers.s3fd import detect_faces

    analysis = analyse_video(path)
    scale = _full_width(path) / max(1, analysis.image_size[0])
    want: dict[int, list[np.ndarray]] = {}
    for t in analysis.tracks:
        if t.n_frames >= MIN_TRACK_FRAMES:
            for n, b in zip(t.frame_index, t.boxes, strict=True):
                want.setdefault(n, []).append(s3fd_like_box(np.asarray(b)) * scale)
    rows = []
    for frame in iter_video_frames(path, max_side=None):
        boxes = want.get(frame.index, [])
        dets = detect_faces(net, frame.image) if boxes else np.zeros((0, 5))
        for box in boxes:
            iou = _iou(dets[:, :4], box[None]) if len(dets) else np.zeros(0)
            if not len(iou) or iou.max() < 0.3:
                rows.append(None)
                continue
            d = dets[int(np.argmax(iou)), :4]
            size = max(d[2] - d[0], d[3] - d[1])
            rows.append([((box[0] + box[2]) - (d[0] + d[2])) / 2 / size,
                         ((box[1] + box[3]) - (d[1] + d[3])) / 2 / size,
                         max(box[2] - box[0], box[3] - box[1]) / size,
                         float(_iou(_crop_window(box), _crop_window(d)))])
    got = np.array([r for r in rows if r is not None] or np.zeros((0, 4)))
    med = np.median(got, 0) if len(got) else [float("nan")] * 4
    return {"clip": str(path), "frames": len(rows), "matched": round(len(got) / max(1, len(rows)), 3),
            "dx_box": round(float(med[0]), 4), "dy_box": round(float(med[1]), 4),
            "size_ratio": round(float(med[2]), 4), "crop_iou": round(float(med[3]), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clips", nargs="+", type=Path)
    ap.add_argument("--s3fd-weights", type=Path, required=True, help="syncnet_python's sfd_face.pth")
    args = ap.parse_args()
    from avsync.peers.s3fd import S3FDNet
    from avsync.peers.weights import load_into

    try:
        net = load_into(S3FDNet(), args.s3fd_weights, "sfd_face.pth")
    except AvsyncError as exc:
        sys.exit(f"error: {exc}")
    for clip in args.clips:
        print(json.dumps(measure(clip, net)), flush=True)


if __name__ == "__main__":
    main()
