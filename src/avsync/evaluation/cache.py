"""On-disk cache of the face analysis of a clip (the slow part), keyed by file and settings."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from avsync.face.mouth import SIGNAL_NAMES
from avsync.face.tracks import Track, VisualAnalysis
from avsync.inference import ANALYSIS_MAX_SIDE, analyse_video
from avsync.io import atomic_output, probe

CACHE_VERSION = "v1"


def cache_key(path: Path, keep_crops: bool = False) -> str:
    st = path.stat()
    ident = f"{path.resolve()}|{st.st_size}|{int(st.st_mtime)}|{ANALYSIS_MAX_SIDE}|" \
            f"{','.join(SIGNAL_NAMES)}|{CACHE_VERSION}" + ("|crops" if keep_crops else "")
    return hashlib.sha1(ident.encode()).hexdigest()[:16]


def save_analysis(analysis: VisualAnalysis, fps: float, out: Path) -> None:
    arrays = {"fps": np.float64(fps), "n_frames": np.int64(analysis.n_frames),
              "frame_times": analysis.frame_times_s, "cuts": np.array(analysis.cuts, np.int64),
              "n_tracks": np.int64(len(analysis.tracks))}
    for j, t in enumerate(analysis.tracks):
        arrays[f"t{j}_meta"] = np.array([t.track_id, t.shot], np.int64)
        arrays[f"t{j}_index"] = np.array(t.frame_index, np.int64)
        arrays[f"t{j}_time"] = np.array(t.time_s, np.float64)
        arrays[f"t{j}_signals"] = t.signal_matrix()
        if t.mouth:
            arrays[f"t{j}_mouth"] = np.stack(t.mouth).astype(np.uint8)
            arrays[f"t{j}_lips"] = np.stack(t.lips).astype(np.float16)
            arrays[f"t{j}_valid"] = np.asarray(t.valid, bool)
    with atomic_output(out, overwrite=True) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)


def load_analysis(path: Path) -> VisualAnalysis:
    z = np.load(path)
    tracks = []
    for j in range(int(z["n_tracks"])):
        tid, shot = (int(x) for x in z[f"t{j}_meta"])
        t = Track(track_id=tid, shot=shot, frame_index=list(z[f"t{j}_index"]),
                  time_s=list(z[f"t{j}_time"]), signals=list(z[f"t{j}_signals"]))
        if f"t{j}_mouth" in z.files:
            t.mouth, t.lips = list(z[f"t{j}_mouth"]), list(z[f"t{j}_lips"])
            t.valid = [bool(v) for v in z[f"t{j}_valid"]]
        tracks.append(t)
    va = VisualAnalysis(tracks=tracks, n_frames=int(z["n_frames"]),
                        frame_times_s=z["frame_times"], cuts=list(z["cuts"]), image_size=(0, 0))
    va.fps = float(z["fps"])  # type: ignore[attr-defined]
    return va


def cached_analysis(path: str | Path, cache_dir: str | Path | None, keep_crops: bool = False
                    ) -> VisualAnalysis:
    """Face analysis of ``path`` with ``.fps`` set; read from / written to ``cache_dir``.

    keep_crops: also keep (and cache) mouth crops and lip landmarks, for trained methods.
    """
    path = Path(path)
    info = probe(path)
    if cache_dir is not None:
        cfile = Path(cache_dir) / f"{path.stem[:40]}-{cache_key(path, keep_crops)}.npz"
        if cfile.is_file():
            return load_analysis(cfile)
    analysis = analyse_video(path, keep_crops=keep_crops)
    fps = analysis.rate_fps or info.fps  # 50/60 fps videos are analysed on a 25 fps grid
    if cache_dir is not None:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        save_analysis(analysis, fps, cfile)
        return load_analysis(cfile)
    analysis.fps = fps  # type: ignore[attr-defined]
    return analysis
