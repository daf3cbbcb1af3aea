"""Odd streams through the CLI: each file gives a result or a clear one-line error.

The files are made in tmp_path from the shipped example (a real 3 s GRID clip, in sync) with the
Debian ffmpeg binary (skipped when absent). ``--method avcorr`` keeps the runs short; the
stream handling under test is the same for every method.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg binary")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "grid_bbaf2n.mp4"


def ffmpeg(*args: str | Path) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, args)], check=True)


def ffprobe_streams(path: Path) -> list[dict]:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(path)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)["streams"]


def avsync(*args: str | Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "avsync.cli", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=600)


def detect_json(path: Path, *extra: str) -> tuple[int, dict, str]:
    proc = avsync("detect", path, "--method", "avcorr", "--json", "--no-progress", *extra)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout
    return proc.returncode, json.loads(lines[0]), proc.stderr


def assert_result(path: Path, *extra: str, max_abs_offset: int | None = 2) -> dict:
    rc, r, err = detect_json(path, *extra)
    assert rc == 0 and "error" not in r, (r, err)
    if max_abs_offset is not None:  # the example is in sync
        assert abs(r["offset_frames"]) <= max_abs_offset, r
    return r


def assert_one_line_error(path: Path, *extra: str, contains: str) -> str:
    proc = avsync("detect", path, "--method", "avcorr", "--no-progress", *extra)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert contains in lines[0].lower(), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("odd")


def test_two_audio_streams_and_audio_stream_option(media: Path) -> None:
    # a:0 silent (not default), a:1 the real speech with the default disposition.
    path = media / "two_audio.mkv"
    ffmpeg("-i", EXAMPLE, "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-map", "0:v",
           "-map", "1:a", "-map", "0:a", "-c:v", "copy", "-c:a", "flac", "-shortest",
           "-metadata:s:a:1", "language=eng", "-disposition:a:0", "0",
           "-disposition:a:1", "default", path)
    assert [s["codec_type"] for s in ffprobe_streams(path)] == ["video", "audio", "audio"]
    r = assert_result(path)  # the default-disposition stream
    assert r["audio_stream"]["index"] == 1 and r["audio_stream"]["language"] == "eng"
    r1 = assert_result(path, "--audio-stream", "1")
    assert r1["offset_frames"] == r["offset_frames"] and r1["confidence"] == r["confidence"]
    assert_one_line_error(path, "--audio-stream", "0", contains="silent")
    assert_one_line_error(path, "--audio-stream", "5", contains="--audio-stream 5 does not exist")


def test_fix_with_audio_stream_writes_the_chosen_stream(media: Path) -> None:
    src = media / "two_audio_fix.mkv"
    ffmpeg("-i", EXAMPLE, "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-map", "0:v",
           "-map", "1:a", "-map", "0:a", "-c:v", "copy", "-c:a", "flac", "-shortest", src)
    out = media / "fixed.mkv"
    proc = avsync("fix", src, "-o", out, "--offset-ms", "40", "--audio-stream", "1")
    assert proc.returncode == 0, proc.stderr
    audio = [s for s in ffprobe_streams(out) if s["codec_type"] == "audio"]
    assert len(audio) == 1
    r = assert_result(out, max_abs_offset=None)  # the speech, not the silent stream
    assert r["audio_stream"]["n_audio_streams"] == 1


def test_eight_channel_audio(media: Path) -> None:
    path = media / "ch8.mkv"
    ffmpeg("-i", EXAMPLE, "-c:v", "copy", "-af",
           "pan=7.1|c0=c0|c1=c0|c2=c0|c3=0*c0|c4=c0|c5=c0|c6=c0|c7=c0", "-c:a", "flac", path)
    assert [s["channels"] for s in ffprobe_streams(path) if s["codec_type"] == "audio"] == [8]
    r = assert_result(path)
    assert r["audio_stream"]["channels"] == 8


@pytest.mark.parametrize("which", ["audio_shorter", "audio_longer"])
def test_audio_shorter_or_longer_than_video(media: Path, which: str) -> None:
    path = media / f"{which}.mkv"
    if which == "audio_shorter":  # 2 s of audio under 3 s of video
        ffmpeg("-i", EXAMPLE, "-c:v", "copy", "-af", "atrim=0:2", "-c:a", "flac", path)
    else:  # 2 s of video over 3 s of audio
        ffmpeg("-i", EXAMPLE, "-vf", "trim=0:2", "-c:v", "libx264", "-c:a", "flac", path)
    durations = {s["codec_type"]: float(s.get("duration") or 0) for s in ffprobe_streams(path)}
    r = assert_result(path)
    assert r["tracks"] and r["duration_s"] > 2.5, (durations, r)


@pytest.mark.parametrize("suffix", [".mp4", ".ts"])
def test_bframes_and_negative_timestamps(media: Path, suffix: str) -> None:
    # .mp4: B-frames with negative decode timestamps (the muxer's edit list hides the delay);
    # .ts: B-frames, timestamps starting at 1.4 s (mux delay), audio and video starts differ.
    path = media / f"bframes{suffix}"
    ffmpeg("-i", EXAMPLE, "-c:v", "libx264", "-bf", "2", "-g", "12", "-c:a", "aac",
           "-avoid_negative_ts", "disabled", path)
    v = next(s for s in ffprobe_streams(path) if s["codec_type"] == "video")
    assert int(v.get("has_b_frames", 0)) > 0
    first = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries",
                            "packet=dts_time", "-of", "csv=p=0", str(path)], check=True,
                           capture_output=True, text=True).stdout.split()[0]
    if suffix == ".mp4":
        assert float(first) < 0  # negative timestamps really are in the file
    assert_result(path)


def test_interlaced(media: Path) -> None:
    path = media / "interlaced.mkv"
    ffmpeg("-i", EXAMPLE, "-vf", "setfield=tff", "-flags", "+ilme+ildct", "-top", "1",
           "-c:v", "libx264", "-c:a", "copy", path)
    v = next(s for s in ffprobe_streams(path) if s["codec_type"] == "video")
    assert v.get("field_order") in ("tt", "tb"), v.get("field_order")
    assert_result(path)


def test_12_fps_animation(media: Path) -> None:
    path = media / "fps12.mkv"
    ffmpeg("-i", EXAMPLE, "-vf", "fps=12", "-c:v", "libx264", "-c:a", "copy", path)
    r = assert_result(path)
    assert abs(r["fps"] - 12) < 0.01


def test_attached_picture(media: Path) -> None:
    cover = media / "cover.png"
    ffmpeg("-i", EXAMPLE, "-frames:v", "1", "-vf", "scale=64:-1", cover)
    path = media / "with_cover.mp4"
    ffmpeg("-i", EXAMPLE, "-i", cover, "-map", "0", "-map", "1", "-c", "copy",
           "-disposition:v:1", "attached_pic", path)
    assert sum(s["codec_type"] == "video" for s in ffprobe_streams(path)) == 2
    r = assert_result(path)
    assert r["tracks"][0]["n_frames"] >= 70  # the clip's frames, not the cover's one


def test_audio_only(media: Path) -> None:
    path = media / "audio_only.m4a"
    ffmpeg("-i", EXAMPLE, "-vn", "-c:a", "copy", path)
    assert_one_line_error(path, contains="no video stream")


def test_image_only(media: Path) -> None:
    png = media / "still.png"
    ffmpeg("-i", EXAMPLE, "-frames:v", "1", png)
    assert_one_line_error(png, contains="no audio stream")
    still = media / "still.mp4"  # a still face over the real speech
    ffmpeg("-loop", "1", "-i", png, "-i", EXAMPLE, "-map", "0:v", "-map", "1:a", "-t", "3",
           "-r", "25", "-c:v", "libx264", "-c:a", "copy", "-shortest", still)
    rc, r, err = detect_json(still)
    if rc == 0:
        assert not r["reliable"], r  # a still mouth is no evidence
    else:
        assert len([ln for ln in err.splitlines() if ln.strip()]) <= 1 and "error" in r
