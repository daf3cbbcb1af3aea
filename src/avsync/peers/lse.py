"""``avsync metrics --lse``: paper-comparable LSE-D / LSE-C of video files with the user's SyncNet.

Not avsync's own LSE-like numbers (``avsync metrics`` without --lse, from avsync's SyncNet trained
on minutes of data, lipgen.metrics.lse_from_curve): those are not comparable with papers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from avsync.cli_util import err, one_sentence
from avsync.errors import AvsyncError


def lse_metrics(path: str | Path, method) -> dict:
    """{path, lse_d, lse_c, offset_frames, offset_ms, ...} of one file with a loaded SyncNet method."""
    r = method.detect_file(path)
    return {"path": str(path), "lse_d": r.lse_d, "lse_c": r.lse_c, "offset_frames": r.offset_frames,
            "offset_ms": r.offset_ms, "fps": r.fps, "syncnet_av_offset": -r.peer["offset_frames_25fps"],
            "tracks": r.peer["tracks"], "crop_boxes": r.peer["crop_boxes"], "model": "syncnet_v2",
            "weights": r.peer["weights"]}


def lse_command(videos: list[Path], weights: Path | None, s3fd_weights: Path | None, json_out: bool) -> int:
    """Score each video; one line per video (JSON or text), the mean over videos in text mode.
    Returns the exit code (1 if any video failed)."""
    from avsync.models.registry import create_model

    try:
        method = create_model("syncnet_v2", weights=weights, s3fd_weights=s3fd_weights)
    except AvsyncError as exc:
        err.print(f"[red]error:[/red] {one_sentence(exc)}", highlight=False, soft_wrap=True)
        return 1
    rows, failed = [], 0
    for path in videos:
        try:
            row = lse_metrics(path, method)
        except Exception as exc:  # noqa: BLE001  (one line per failed input, the others go on)
            failed += 1
            msg = one_sentence(exc) if isinstance(exc, AvsyncError) else (
                f"unexpected failure ({type(exc).__name__}: {one_sentence(exc)})")
            if json_out:
                print(json.dumps({"path": str(path), "error": msg}), flush=True)
            else:
                err.print(f"[red]error:[/red] {path}: {msg}", highlight=False, soft_wrap=True)
            continue
        rows.append(row)
        if json_out:
            print(json.dumps(row), flush=True)
        else:
            print(f"{path}: LSE-D {row['lse_d']:.3f}  LSE-C {row['lse_c']:.3f}  offset "
                  f"{row['offset_frames']:+d} frames ({row['offset_ms']:+.0f} ms; syncnet 'AV offset' "
                  f"{row['syncnet_av_offset']}), {len(row['tracks'])} track(s)", flush=True)
    if len(rows) > 1 and not json_out:
        print(f"mean over {len(rows)} videos: LSE-D {np.mean([r['lse_d'] for r in rows]):.3f}  "
              f"LSE-C {np.mean([r['lse_c'] for r in rows]):.3f}")
    return 1 if failed else 0
