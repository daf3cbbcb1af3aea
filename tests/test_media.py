"""Tests of avsync.io: probe, frame/audio decoding, shift_audio, safe outputs, real clips."""

from __future__ import annotations

import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from avsync.errors import MediaError, OutputError
from avsync.io import (
    atomic_output,
    iter_video_frames,
    load_audio,
    probe,
    shift_audio,
    write_av,
)
from avsync.io import output as output_mod
from avsync.io import remux as remux_mod

SR = 16_000
N_FRAMES = 50
CLICK_FRAME = 20
H, W = 96, 128


def _frames(n: int = N_FRAMES) -> np.ndarray:
    """Frame i is a flat gray of level 20 + 4 i, so order and identity can be checked."""
    levels = (20 + 4 * np.arange(n)).astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (n, H, W, 3)).copy()


def _click_audio(fps: float, n: int = N_FRAMES, sr: int = SR, channels: int = 1) -> np.ndarray:
    """Silence of n frames' length with a 4-sample click at frame CLICK_FRAME's time."""
    audio = np.zeros(int(round(n / fps * sr)), np.float32)
    at = int(round(CLICK_FRAME / fps * sr))
    audio[at : at + 4] = 0.9
    return audio if channels == 1 else np.stack([audio, 0.5 * audio], axis=1)


def _click_time(path: Path) -> float:
    track = load_audio(path)
    return track.start_s + int(np.argmax(np.abs(track.samples))) / track.sample_rate_hz


def _leftovers(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*avsync-tmp*"))


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clips")
    ntsc = Fraction(30000, 1001)
    return {
        "25": write_av(d / "c25.mp4", _frames(), 25.0, _click_audio(25.0), SR),
        "2997": write_av(d / "c2997.mp4", _frames(30), ntsc, _click_audio(float(ntsc), 30), SR),
        "stereo44": write_av(
            d / "st44.mkv", _frames(), 25.0, _click_audio(25.0, sr=44_100, channels=2), 44_100
        ),
        "video_only": write_av(d / "vonly.mp4", _frames(10), 25.0, None, SR),
        "audio_only": write_av(d / "aonly.m4a", None, None, _click_audio(25.0), SR),
    }


# ----------------------------------------------------------------------------- probe


def test_probe_25fps(clips: dict[str, Path]) -> None:
    info = probe(clips["25"])
    assert info.has_video and info.has_audio
    assert info.fps == pytest.approx(25.0)
    assert info.duration_s == pytest.approx(N_FRAMES / 25.0, abs=0.1)
    assert (info.width, info.height) == (W, H)
    assert info.video_codec in ("h264", "mpeg4") and info.audio_codec == "aac"
    assert (info.audio_rate_hz, info.audio_channels) == (SR, 1)
    assert info.n_frames == N_FRAMES and not info.is_vfr
    assert info.video_start_s == pytest.approx(0.0) and info.audio_start_s == pytest.approx(0.0)
    assert "mp4" in info.container


def test_probe_2997fps(clips: dict[str, Path]) -> None:
    info = probe(clips["2997"])
    assert info.fps == pytest.approx(30000 / 1001, abs=1e-4)
    assert info.n_frames == 30
    assert info.duration_s == pytest.approx(30 * 1001 / 30000, abs=0.1)


def test_probe_single_stream_files(clips: dict[str, Path]) -> None:
    v = probe(clips["video_only"])
    assert v.has_video and not v.has_audio and v.audio_codec is None and v.audio_rate_hz == 0
    a = probe(clips["audio_only"])
    assert a.has_audio and not a.has_video and a.fps == 0.0 and a.video_start_s is None


# ----------------------------------------------------------------------------- video frames


def test_iter_video_frames_count_times_and_content(clips: dict[str, Path]) -> None:
    frames = iter_video_frames(clips["25"], max_side=None)
    assert isinstance(frames, Iterator)
    got = list(frames)
    assert [f.index for f in got] == list(range(N_FRAMES))
    np.testing.assert_allclose([f.time_s for f in got], np.arange(N_FRAMES) / 25.0, atol=1e-6)
    for f in got:
        assert f.image.shape == (H, W, 3) and f.image.dtype == np.uint8
        assert abs(float(f.image.mean()) - (20 + 4 * f.index)) < 4


def test_iter_video_frames_fractional_fps(clips: dict[str, Path]) -> None:
    times = [f.time_s for f in iter_video_frames(clips["2997"])]
    np.testing.assert_allclose(times, np.arange(30) * 1001 / 30000, atol=1e-6)


@pytest.mark.parametrize(("max_side", "shape"), [(64, (48, 64, 3)), (1000, (H, W, 3))])
def test_iter_video_frames_max_side(clips: dict[str, Path], max_side: int, shape: tuple) -> None:
    first = next(iter_video_frames(clips["25"], max_side=max_side))
    assert first.image.shape == shape  # downscaled keeping aspect, never upscaled


# ----------------------------------------------------------------------------- audio


def test_load_audio_click_position(clips: dict[str, Path]) -> None:
    track = load_audio(clips["25"])
    assert track.sample_rate_hz == SR and track.samples.dtype == np.float32
    assert track.samples.ndim == 1 and np.abs(track.samples).max() <= 1.0
    assert abs(len(track.samples) - N_FRAMES / 25.0 * SR) <= 1024
    assert track.start_s == pytest.approx(0.0)
    assert _click_time(clips["25"]) == pytest.approx(CLICK_FRAME / 25.0, abs=0.001)


def test_load_audio_resamples_and_downmixes(clips: dict[str, Path]) -> None:
    track = load_audio(clips["stereo44"], sample_rate_hz=8000)
    assert track.sample_rate_hz == 8000
    assert abs(len(track.samples) - N_FRAMES / 25.0 * 8000) <= 1024
    t = track.start_s + int(np.argmax(np.abs(track.samples))) / 8000
    assert t == pytest.approx(CLICK_FRAME / 25.0, abs=0.001)


# ----------------------------------------------------------------------------- shift_audio


def _video_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.video[0]) if p.size]


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
@pytest.mark.parametrize("offset_ms", [80.0, -120.0])
def test_shift_audio_moves_click(
    clips: dict[str, Path], tmp_path: Path, offset_ms: float, suffix: str
) -> None:
    src = clips["25"] if suffix == ".mp4" else clips["stereo44"]
    out = shift_audio(src, tmp_path / f"out{suffix}", offset_ms)
    assert out == tmp_path / f"out{suffix}" and out.is_file()
    vin = list(iter_video_frames(src, max_side=16))
    vout = list(iter_video_frames(out, max_side=16))
    assert len(vout) == len(vin) == N_FRAMES
    np.testing.assert_allclose([f.time_s for f in vout], [f.time_s for f in vin], atol=1e-6)
    assert _video_packets(out) == _video_packets(src)  # stream copy, bit-exact
    info_in, info_out = probe(src), probe(out)
    assert info_out.video_codec == info_in.video_codec
    assert info_out.audio_rate_hz == info_in.audio_rate_hz
    assert info_out.audio_channels == info_in.audio_channels
    moved_ms = 1000 * (
        (_click_time(out) - vout[CLICK_FRAME].time_s) - (_click_time(src) - vin[CLICK_FRAME].time_s)
    )
    assert moved_ms == pytest.approx(-offset_ms, abs=2.0)
    a_in, a_out = load_audio(src), load_audio(out)
    assert a_out.start_s == pytest.approx(a_in.start_s, abs=1e-3)
    assert abs(len(a_out.samples) - len(a_in.samples)) <= 1024 * SR / info_in.audio_rate_hz + 1
    assert not _leftovers(tmp_path)


def test_shift_audio_avi_pcm(tmp_path: Path) -> None:
    src = write_av(tmp_path / "in.avi", _frames(), 25.0, _click_audio(25.0), SR)
    out = shift_audio(src, tmp_path / "out.avi", 40.0)
    assert probe(out).audio_codec == "pcm_s16le"
    assert _click_time(out) == pytest.approx(_click_time(src) - 0.040, abs=0.001)


def test_shift_audio_refuses_b_frames_in_avi(clips: dict[str, Path], tmp_path: Path) -> None:
    if probe(clips["25"]).video_codec != "h264":
        pytest.skip("needs libx264 (B-frames)")
    with pytest.raises(OutputError, match="B-frames"):
        shift_audio(clips["25"], tmp_path / "out.avi", 40)
    assert not list(tmp_path.iterdir())


def test_shift_audio_without_audio_is_media_error(clips: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="no audio"):
        shift_audio(clips["video_only"], tmp_path / "o.mp4", 10)
    assert not list(tmp_path.iterdir())


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 3000),
    shift=st.integers(-4000, 4000),
    chunks=st.lists(st.integers(1, 700), min_size=1, max_size=8),
)
def test_delay_line_is_an_exact_shift(n: int, shift: int, chunks: list[int]) -> None:
    x = np.arange(1, n + 1, dtype=np.float32)[None, :]
    line = remux_mod._DelayLine(shift, 1)
    out, i, k = [], 0, 0
    while i < n:
        out.append(line.push(x[:, i : i + chunks[k % len(chunks)]]))
        i, k = i + chunks[k % len(chunks)], k + 1
    out.append(line.finish())
    got = np.concatenate(out, axis=1)[0]
    src = np.arange(n) + shift
    expected = np.where((src >= 0) & (src < n), src + 1, 0).astype(np.float32)
    np.testing.assert_array_equal(got, expected)  # same length, moved `shift` samples earlier


# ----------------------------------------------------------------------------- refusals


@pytest.fixture
def src_copy(clips: dict[str, Path], tmp_path: Path) -> Path:
    p = tmp_path / "in.mp4"
    p.write_bytes(clips["25"].read_bytes())
    return p


def test_refuses_same_file(src_copy: Path) -> None:
    before = src_copy.read_bytes()
    alias = src_copy.parent / "." / src_copy.name
    with pytest.raises(OutputError, match="input file"):
        shift_audio(src_copy, alias, 40, overwrite=True)
    link = src_copy.parent / "hard.mp4"
    os.link(src_copy, link)
    with pytest.raises(OutputError, match="input file"):
        shift_audio(src_copy, link, 40, overwrite=True)
    assert src_copy.read_bytes() == before and not _leftovers(src_copy.parent)


def test_refuses_existing_output_unless_overwrite(src_copy: Path) -> None:
    out = src_copy.parent / "out.mp4"
    out.write_bytes(b"precious")
    with pytest.raises(OutputError, match=r"exists; pass --overwrite"):
        shift_audio(src_copy, out, 40)
    assert out.read_bytes() == b"precious"
    shift_audio(src_copy, out, 40, overwrite=True)
    assert probe(out).has_audio


def test_refuses_missing_folder(src_copy: Path) -> None:
    with pytest.raises(OutputError, match="does not exist"):
        shift_audio(src_copy, src_copy.parent / "nope" / "out.mp4", 40)


def test_refuses_unsupported_suffix(src_copy: Path) -> None:
    with pytest.raises(OutputError, match="unsupported"):
        shift_audio(src_copy, src_copy.parent / "out.txt", 40)


def test_refuses_read_only_folder(src_copy: Path, tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user (root) that chmod cannot block")
        with pytest.raises(OutputError, match="not writable"):
            shift_audio(src_copy, ro / "out.mp4", 40)
    finally:
        ro.chmod(0o755)


def test_refuses_unwritable_folder_reported_by_os_access(
    src_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_access = os.access
    monkeypatch.setattr(
        output_mod.os, "access", lambda p, mode, **k: not mode & os.W_OK and real_access(p, mode)
    )
    with pytest.raises(OutputError, match="not writable"):
        shift_audio(src_copy, src_copy.parent / "out.mp4", 40)
    assert not _leftovers(src_copy.parent)


def test_failure_midway_leaves_nothing(src_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = src_copy.read_bytes()
    out = src_copy.parent / "out.mp4"
    out.write_bytes(b"old output")

    def boom(self: object, arr: np.ndarray) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(remux_mod._Remuxer, "_emit", boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        shift_audio(src_copy, out, 40, overwrite=True)
    assert src_copy.read_bytes() == before
    assert out.read_bytes() == b"old output"
    assert not _leftovers(src_copy.parent)


def test_atomic_output(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    with pytest.raises(ValueError), atomic_output(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".r.avsync-tmp")
        assert tmp.suffix == ".json"
        tmp.write_text("{}")
        raise ValueError("fail")
    assert not target.exists() and not _leftovers(tmp_path)
    with atomic_output(target) as tmp:
        tmp.write_text('{"a": 1}')
    assert target.read_text() == '{"a": 1}' and not _leftovers(tmp_path)


# ----------------------------------------------------------------------------- bad inputs


def _readers(path: Path) -> list:
    return [
        lambda: probe(path),
        lambda: list(iter_video_frames(path)),
        lambda: load_audio(path),
    ]


@pytest.mark.parametrize("kind", ["missing", "empty", "text", "folder", "truncated"])
def test_bad_inputs_raise_media_error(clips: dict[str, Path], tmp_path: Path, kind: str) -> None:
    path = tmp_path / "bad.mp4"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is not a video\n" * 50)
    elif kind == "folder":
        path.mkdir()
    elif kind == "truncated":  # moov is at the end: the first 30 % is unreadable
        data = clips["25"].read_bytes()
        path.write_bytes(data[: int(len(data) * 0.3)])
    for read in _readers(path):
        with pytest.raises(MediaError) as err:
            read()
        message = str(err.value)
        assert str(path) in message and message.endswith(".") and "\n" not in message


def test_truncated_streamable_file_yields_partial_frames(tmp_path: Path) -> None:
    full = write_av(tmp_path / "full.mkv", _frames(), 25.0, _click_audio(25.0), SR)
    data = full.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    frames = list(iter_video_frames(cut, max_side=16))
    assert 0 < len(frames) < N_FRAMES
    assert len(load_audio(cut).samples) > 0


def test_missing_stream_errors(clips: dict[str, Path]) -> None:
    with pytest.raises(MediaError, match="no audio stream"):
        load_audio(clips["video_only"])
    with pytest.raises(MediaError, match="no video stream"):
        iter_video_frames(clips["audio_only"])


# ----------------------------------------------------------------------------- write_av


def test_write_av_odd_size_and_wav(tmp_path: Path) -> None:
    odd = np.zeros((3, 31, 45, 3), np.uint8)
    p = write_av(tmp_path / "odd.mp4", odd, 10, None)
    assert (probe(p).width, probe(p).height) == (46, 32)
    w = write_av(tmp_path / "a.wav", None, None, _click_audio(25.0), SR)
    assert probe(w).audio_codec == "pcm_s16le"
    assert _click_time(w) == pytest.approx(CLICK_FRAME / 25.0, abs=1 / SR)
    with pytest.raises(ValueError):
        write_av(tmp_path / "x.mp4", None, None, None)


# ----------------------------------------------------------------------------- real clips


@pytest.mark.realdata
def test_real_edit_list_clip(realclips: Path, tmp_path: Path) -> None:
    src = realclips / "vanshg-auto_avsr/data/leah_crop1.mp4"
    info = probe(src)
    assert info.duration_s == pytest.approx(4.061, abs=0.01)  # not the 8.1 s of the mvhd
    frames = list(iter_video_frames(src, max_side=32))
    assert len(frames) == 96  # 194 stored, 98 hidden by the edit list
    assert frames[0].time_s == pytest.approx(0.0)
    assert frames[-1].time_s == pytest.approx(95 * 1001 / 24000, abs=1e-6)
    track = load_audio(src)
    assert track.start_s == pytest.approx(0.0) and track.duration_s == pytest.approx(
        4.017, abs=0.01
    )
    out = shift_audio(src, tmp_path / "leah.mp4", 100)
    assert len(list(iter_video_frames(out, max_side=16))) == 96
    shifted = load_audio(out)
    n = min(len(track.samples), len(shifted.samples)) - 3200
    scores = [np.dot(track.samples[k : k + n], shifted.samples[:n]) for k in range(1590, 1611)]
    assert 1590 + int(np.argmax(scores)) == 1600  # audio moved 100 ms = 1600 samples earlier
    with pytest.raises(OutputError, match="edit list"):
        shift_audio(src, tmp_path / "leah.mkv", 100)
    assert not _leftovers(tmp_path)


@pytest.mark.realdata
def test_real_vfr_clip(realclips: Path) -> None:
    src = realclips / "video-retalking/examples/face/1.mp4"
    info = probe(src)
    assert info.is_vfr and info.fps == pytest.approx(22.13, abs=0.01)
    assert info.video_start_s == pytest.approx(0.033, abs=0.001) and info.audio_start_s == 0.0
    times = np.array([f.time_s for f in iter_video_frames(src, max_side=16)])
    assert len(times) == 135 and times[0] == pytest.approx(507 / 15360)
    gaps = np.round(np.diff(times) * 15360).astype(int)
    assert set(gaps) == {512, 1024}


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("rel", "fps", "n"),
    [
        ("lip-reading-deeplearning/data/sample_video.mp4", 30000 / 1001, 209),
        ("LipNet/evaluation/samples/GRID/bbaf2n.mpg", 25.0, 75),
    ],
)
def test_real_cfr_clips(realclips: Path, rel: str, fps: float, n: int) -> None:
    info = probe(realclips / rel)
    assert info.fps == pytest.approx(fps, abs=1e-3) and not info.is_vfr
    times = [f.time_s for f in iter_video_frames(realclips / rel, max_side=16)]
    assert len(times) == n
    np.testing.assert_allclose(times, np.arange(n) / fps, atol=1e-3)


def test_frame_reader_is_the_same_object_under_every_name() -> None:
    """The frame reader lives in avsync.io.frames; avsync.io and avsync.io.media expose the same
    objects (media lazily: frames imports it), so code importing the old names still works and
    isinstance checks agree."""
    import avsync.io
    import avsync.io.frames as frames
    import avsync.io.media as media

    for name in ("iter_video_frames", "VideoFrame", "DecodedFrame"):
        assert getattr(media, name) is getattr(frames, name)
    assert avsync.io.iter_video_frames is frames.iter_video_frames
    assert avsync.io.VideoFrame is frames.VideoFrame
    with pytest.raises(AttributeError):
        media.no_such_name  # noqa: B018
