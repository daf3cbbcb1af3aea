"""Display rotation (phone clips): frames are analysed upright, detect agrees with the upright
original, ``--rotate`` overrides the metadata and ``fix`` keeps the display matrix.

The rotated files are made the way a phone makes them: the pixels are stored turned and a
display matrix says how to show them upright (Debian's ffmpeg; skipped when it is absent).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from avsync.cli import app
from avsync.errors import AvsyncError
from avsync.inference import detect
from avsync.io import iter_video_frames, shift_audio
from avsync.io.orientation import ccw_to_cw, display_rotation_cw, parse_rotate

FFMPEG, FFPROBE = shutil.which("ffmpeg"), shutil.which("ffprobe")
needs_ffmpeg = pytest.mark.skipif(not (FFMPEG and FFPROBE), reason="ffmpeg/ffprobe not installed")

SHIFT_FRAMES = 4  # audio made late by 4 frames (160 ms at 25 fps) so the offset is not just 0
# Stored pixels for a display matrix of CCW angle theta: the upright picture turned CW by theta.
STORE_FILTER = {0: None, 90: "transpose=clock", 180: "hflip,vflip", 270: "transpose=cclock"}


def _ffmpeg(*args: str | Path) -> None:
    subprocess.run([FFMPEG, "-y", "-v", "error", *map(str, args)], check=True, timeout=120)


def probed_rotation_ccw(path: Path) -> int:
    """ffprobe's display-matrix rotation (CCW degrees, 0 when there is none)."""
    out = subprocess.run([FFPROBE, "-v", "error", "-select_streams", "v:0", "-show_streams",
                          "-of", "json", str(path)], capture_output=True, text=True, check=True)
    stream = json.loads(out.stdout)["streams"][0]
    for sd in stream.get("side_data_list", []):
        if "rotation" in sd:
            return int(sd["rotation"]) % 360
    return int(stream.get("tags", {}).get("rotate", 0)) * -1 % 360


def tag_rotation(src: Path, out: Path, theta_ccw: int) -> None:
    """Stream-copy ``src`` to ``out`` with a display matrix of ``theta_ccw`` degrees (CCW)."""
    try:  # ffmpeg >= 6
        _ffmpeg("-display_rotation", theta_ccw, "-i", src, "-c", "copy", out)
    except subprocess.CalledProcessError:  # ffmpeg 5.1 (Debian 12): the rotate tag sets it
        _ffmpeg("-i", src, "-c", "copy", "-metadata:s:v:0", f"rotate={theta_ccw}", out)
    if probed_rotation_ccw(out) != theta_ccw % 360:
        pytest.skip(f"this ffmpeg did not write a {theta_ccw} degree display matrix")


def phone_copy(src: Path, out: Path, theta_ccw: int, pre_filter: str | None = None) -> Path:
    """``src`` re-encoded with its pixels stored turned, tagged so that it displays upright."""
    filters = ",".join(f for f in (pre_filter, STORE_FILTER[theta_ccw]) if f)
    stored = out.with_name(out.stem + "_stored.mp4")
    _ffmpeg("-i", src, *(["-vf", filters] if filters else []), "-c:v", "libx264", "-preset",
            "veryfast", "-crf", "18", "-c:a", "copy", stored)
    if theta_ccw:
        tag_rotation(stored, out, theta_ccw)
    else:
        stored.rename(out)
    return out


@pytest.fixture(scope="module")
def late_clip(example_clip: Path, tmp_path_factory) -> Path:
    """The example with its audio made SHIFT_FRAMES late (video stream-copied)."""
    out = tmp_path_factory.mktemp("orient") / "late.mp4"
    return shift_audio(example_clip, out, -SHIFT_FRAMES * 40.0)


@pytest.fixture(scope="module")
def late_offset(late_clip: Path) -> int:
    offset = detect(late_clip, drift=False).offset_frames
    assert abs(offset - SHIFT_FRAMES) <= 1
    return offset


def _first_frame(path: Path, **kw) -> np.ndarray:
    return next(iter(iter_video_frames(path, max_side=None, **kw))).image


def test_parse_rotate() -> None:
    assert parse_rotate("auto") is None and parse_rotate(None) is None
    assert [parse_rotate(v) for v in ("0", 90, "180", " 270")] == [0, 90, 180, 270]
    for bad in ("45", "-90", "left", 360):
        with pytest.raises(AvsyncError, match="--rotate"):
            parse_rotate(bad)
    assert [ccw_to_cw(a) for a in (0, 90, -90, 180, -180, 270, 89.6)] == [0, 270, 90, 180, 180, 90, 270]


@needs_ffmpeg
@pytest.mark.parametrize("theta", [90, 180, 270])
def test_frames_upright_like_ffmpeg(theta: int, example_clip: Path, tmp_path: Path) -> None:
    """Our decoded frame equals ffmpeg's own autorotated decode, and the upright original."""
    clip = phone_copy(example_clip, tmp_path / f"r{theta}.mp4", theta)
    assert display_rotation_cw(clip) == (-theta) % 360
    ours = _first_frame(clip)
    raw = tmp_path / "ff.rgb"
    _ffmpeg("-i", clip, "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", raw)
    upright = _first_frame(example_clip)
    assert ours.shape == upright.shape  # stored turned, shown upright
    ff = np.fromfile(raw, np.uint8).reshape(ours.shape)
    assert np.abs(ours.astype(int) - ff).mean() < 2.0
    assert np.abs(ours.astype(int) - upright).mean() < 6.0  # re-encoded, same picture
    # The override wins: rotate=0 gives the stored (turned) pixels.
    stored = _first_frame(clip, rotate=0)
    assert stored.shape == (np.rot90(upright, k=-theta // 90) if theta % 180 else upright).shape
    assert np.array_equal(_first_frame(clip, rotate=(-theta) % 360), ours)


@needs_ffmpeg
@pytest.mark.parametrize("theta", [0, 90, 180, 270])
def test_detect_on_rotated_phone_clips(theta: int, late_clip: Path, late_offset: int,
                                       tmp_path: Path) -> None:
    clip = phone_copy(late_clip, tmp_path / f"late_r{theta}.mp4", theta)
    result = detect(clip, drift=False)
    assert abs(result.offset_frames - late_offset) <= 1, result.offset_frames
    assert result.tracks and result.tracks[0].n_frames >= 70  # one face, seen in ~every frame


@needs_ffmpeg
def test_portrait_phone_clip(late_clip: Path, late_offset: int, tmp_path: Path) -> None:
    """A 1080x1920 portrait recording stored as 1920x1080 with a -90 display matrix."""
    clip = phone_copy(late_clip, tmp_path / "portrait.mp4", 270,
                      pre_filter="scale=1080:864,pad=1080:1920:0:528")
    assert display_rotation_cw(clip) == 90
    frame = next(iter(iter_video_frames(clip)))
    assert frame.image.shape[:2] == (640, 360)  # portrait after the turn, longest side 640
    assert abs(detect(clip, drift=False).offset_frames - late_offset) <= 1
    # Forcing the turn the metadata asks for gives the same answer.
    assert abs(detect(clip, drift=False, rotate=90).offset_frames - late_offset) <= 1


@needs_ffmpeg
@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".mkv"])
def test_fix_keeps_display_matrix(suffix: str, example_clip: Path, tmp_path: Path) -> None:
    clip = phone_copy(example_clip, tmp_path / "phone.mp4", 270)
    out = shift_audio(clip, tmp_path / f"fixed{suffix}", 40.0)
    assert probed_rotation_ccw(out) == 270
    assert display_rotation_cw(out) == 90
    assert np.array_equal(_first_frame(out).shape, _first_frame(clip).shape)


def test_cli_rejects_bad_rotate(example_clip: Path, tmp_path: Path) -> None:
    for args in (["detect", "--rotate", "45", str(example_clip)],
                 ["fix", str(example_clip), "-o", str(tmp_path / "o.mp4"), "--rotate", "sideways"]):
        res = CliRunner().invoke(app, args)
        assert res.exit_code != 0
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and "--rotate" in lines[0], res.stderr
    assert not (tmp_path / "o.mp4").exists()
