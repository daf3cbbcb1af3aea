"""High frame rates: 50/60 fps videos are analysed on a 25 fps grid, so the methods trained at
25 fps keep their confidence (they lost most of it when fed every 60 fps frame)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import avsync.analysis as analysis
from avsync.face.frame_rate import ANALYSIS_RATE_FPS, analysis_rate, on_grid
from avsync.inference import detect
from avsync.io import VideoFrame, shift_audio

FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg not installed")
SHIFT_FRAMES = 4  # audio made late by 4 frames of 25 fps (160 ms)


def _frames(fps: float, duration_s: float, t0: float = 0.3) -> list[VideoFrame]:
    n = int(round(duration_s * fps))
    return [VideoFrame(i, t0 + i / fps, np.full((1, 1, 1), i, np.int32)) for i in range(n)]


def test_analysis_rate() -> None:
    assert [analysis_rate(f) for f in (25.0, 29.97, 30.0, 37.5)] == [None] * 4
    assert analysis_rate(50.0) == analysis_rate(59.94) == analysis_rate(120.0) == ANALYSIS_RATE_FPS


@pytest.mark.parametrize("fps", [50.0, 60.0, 59.94, 100.0])
def test_on_grid_keeps_one_frame_per_grid_step(fps: float) -> None:
    src = _frames(fps, 4.0)
    kept = list(on_grid(src, 25.0))
    assert abs(len(kept) - 100) <= 1
    assert [f.index for f in kept] == list(range(len(kept)))
    times = np.array([f.time_s for f in kept])
    assert np.allclose(np.diff(times), 0.04) and times[0] == pytest.approx(0.3)
    by_value = {int(f.image[0, 0, 0]): f for f in src}
    for f in kept[:-1]:  # each kept picture is the source frame nearest to its grid time
        source = by_value[int(f.image[0, 0, 0])]
        assert abs(source.time_s - f.time_s) <= 0.5 / fps + 1e-9
    if fps == 50.0:
        assert [int(f.image[0, 0, 0]) for f in kept[:5]] == [0, 2, 4, 6, 8]


def test_on_grid_leaves_gaps_empty() -> None:
    src = [f for f in _frames(60.0, 2.0) if not 0.8 <= f.time_s < 1.3]  # a 0.5 s hole
    times = np.array([f.time_s for f in on_grid(src, 25.0)])
    assert not ((times > 0.82) & (times < 1.28)).any()
    assert len(times) < 50


@pytest.fixture(scope="module")
def resampled(example_clip: Path, tmp_path_factory) -> dict[int, Path]:
    """The example, audio made late by SHIFT_FRAMES, re-encoded at 25 and at 60 fps (frames
    duplicated by ffmpeg's fps filter) with the same encoder settings."""
    if FFMPEG is None:
        pytest.skip("ffmpeg not installed")
    d = tmp_path_factory.mktemp("hfps")
    late = shift_audio(example_clip, d / "late.mp4", -SHIFT_FRAMES * 40.0)
    out = {}
    for rate in (25, 60):
        out[rate] = d / f"late{rate}.mp4"
        subprocess.run([FFMPEG, "-y", "-v", "error", "-i", str(late), "-vf", f"fps={rate}",
                        "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-c:a", "copy",
                        str(out[rate])], check=True, timeout=120)
    return out


@needs_ffmpeg
def test_60fps_keeps_confidence(resampled: dict[int, Path], monkeypatch) -> None:
    ref = detect(resampled[25], drift=False)
    fast = detect(resampled[60], drift=False)
    assert fast.fps == ANALYSIS_RATE_FPS  # offsets counted in frames of the 25 fps grid
    assert abs(ref.offset_frames - SHIFT_FRAMES) <= 1
    assert abs(fast.offset_ms - ref.offset_ms) <= 40.0
    assert fast.confidence >= ref.confidence - 1.0, (fast.confidence, ref.confidence)
    # Every 60 fps frame fed to the 25 fps methods: what the grid fixes.
    monkeypatch.setattr(analysis, "analysis_rate", lambda fps: None)
    every = detect(resampled[60], drift=False)
    assert every.fps == pytest.approx(60.0)
    assert fast.confidence >= every.confidence + 1.0, (fast.confidence, every.confidence)
