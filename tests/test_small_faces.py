"""Small faces in wide shots: found by the second pass (tiles + per-face crops), not by the
normal 640 px pass; ordinary videos never pay for the second pass."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from avsync.face.small_faces import TILE_SIDES_PX, _tiles
from avsync.inference import ANALYSIS_MAX_SIDE, MIN_TRACK_FRAMES, analyse_video, detect
from avsync.io import shift_audio

FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg not installed")

SHIFT_FRAMES = 4  # audio made late by 4 frames (160 ms at 25 fps)
PANEL = "avobjects/media/demo.mp4"  # MANIFEST kind multi-face: CNN four-way panel, 1280x720


def _ffmpeg(*args: str | Path) -> None:
    subprocess.run([FFMPEG, "-y", "-v", "error", *map(str, args)], check=True, timeout=120)


@pytest.mark.parametrize("w,h", [(1920, 1080), (640, 360), (200, 120)])
def test_tiles_cover_the_frame(w: int, h: int) -> None:
    for side in TILE_SIDES_PX:
        tiles = _tiles(w, h, side)
        covered = np.zeros((h, w), bool)
        for x0, y0, x1, y1 in tiles:
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
            covered[y0:y1, x0:x1] = True
        assert covered.all()


@pytest.fixture(scope="module")
def small_face_clip(example_clip: Path, tmp_path_factory) -> Path:
    """GRID bbaf2n (face ~110 px high in 360x288) scaled by 0.4 -> a ~40 px face, padded into a
    1920x1080 frame, audio SHIFT_FRAMES late."""
    d = tmp_path_factory.mktemp("small")
    wide = d / "wide.mp4"
    _ffmpeg("-i", example_clip, "-vf", "scale=144:116,pad=1920:1080:1200:400:gray",
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-c:a", "copy", wide)
    return shift_audio(wide, d / "wide_late.mp4", -SHIFT_FRAMES * 40.0)


@needs_ffmpeg
def test_small_face_in_wide_shot(small_face_clip: Path) -> None:
    result = detect(small_face_clip, drift=False)
    assert "small_faces" in result.timings_s  # the normal pass found nothing usable
    assert abs(result.offset_frames - SHIFT_FRAMES) <= 1, result.offset_frames
    speaking = [t for t in result.tracks if t.speaking]
    assert speaking and speaking[0].n_frames >= 70
    analysis = analyse_video(small_face_clip, max_faces=2)
    (track,) = [t for t in analysis.tracks if t.n_frames >= MIN_TRACK_FRAMES]
    x0, y0, x1, y1 = np.median(np.asarray(track.boxes), axis=0)
    assert 1200 <= x0 < x1 <= 1344 and 400 <= y0 < y1 <= 516  # in full-frame pixels, in the pad
    assert 25 <= y1 - y0 <= 60  # a ~40 px face


def test_ordinary_video_skips_second_pass(example_clip: Path) -> None:
    result = detect(example_clip, drift=False)
    assert "small_faces" not in result.timings_s
    assert result.tracks and result.tracks[0].n_frames >= 70


@needs_ffmpeg
def test_multi_face_panel(realclip, tmp_path: Path) -> None:
    """The real CNN panel (faces ~90 px in 1280x720, ~45 px at 640): 4 faces, found only by the
    second pass; first 4 s, stream-copied."""
    clip = tmp_path / "panel.mp4"
    _ffmpeg("-i", realclip(PANEL), "-t", "4", "-c", "copy", clip)
    first = analyse_video(clip)  # what the 640 px pass alone would see is part of this
    long_tracks = [t for t in first.tracks if t.n_frames >= 80]
    assert len(long_tracks) >= 3
    assert first.image_size[0] > ANALYSIS_MAX_SIDE  # came from the second pass
    heights = [np.median(np.asarray(t.boxes)[:, 3] - np.asarray(t.boxes)[:, 1]) for t in long_tracks]
    assert all(50 <= h <= 160 for h in heights), heights
