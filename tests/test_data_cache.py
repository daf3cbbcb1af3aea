"""Training-data layer: per-clip cache files, keep_crops tracking, speaker splits, `prepare`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from avsync.cli import app
from avsync.data import (
    CACHE_KEYS,
    ClipSkipped,
    build_cache,
    build_clip_cache,
    frame_to_logmel_index,
    load_clip_cache,
    read_split,
    speaker_group,
    speaker_split,
    write_split,
)
from avsync.data import cache as cache_mod
from avsync.evaluation.clips import Clip
from avsync.face.landmarks import BLENDSHAPE_NAMES, FaceDetection
from avsync.face.mouth import SIGNAL_NAMES
from avsync.face.tracks import analyse_frames
from avsync.io import load_audio, write_av


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("train_cache")


@pytest.fixture(scope="module")
def example_cache(example_clip: Path, cache_dir: Path) -> Path:
    return build_clip_cache(Clip(example_clip, "GRID s1", "examples"), cache_dir)


def test_cache_keys_shapes_dtypes(example_cache: Path, example_frames: np.ndarray):
    d = load_clip_cache(example_cache)
    assert set(d) == set(CACHE_KEYS)
    t = len(example_frames)
    assert d["frame_times_s"].shape == (t,) and d["frame_times_s"].dtype == np.float64
    assert d["mouth"].shape == (t, 48, 48) and d["mouth"].dtype == np.uint8
    assert d["lips"].shape == (t, 40, 2) and d["lips"].dtype == np.float16
    assert d["blend"].shape == (t, len(BLENDSHAPE_NAMES)) and d["blend"].dtype == np.float16
    assert d["signals"].shape == (t, len(SIGNAL_NAMES)) and d["signals"].dtype == np.float32
    assert d["valid"].shape == (t,) and d["valid"].dtype == bool and d["valid"].all()
    assert d["logmel"].ndim == 2 and d["logmel"].shape[1] == 40 and d["logmel"].dtype == np.float16
    assert abs(d["logmel"].shape[0] - 100 * t / d["fps"]) <= 5  # 10 ms rows over the 3 s clip
    assert np.isfinite(d["lips"]).all() and np.isfinite(d["logmel"]).all()
    assert d["fps"] == pytest.approx(25.0) and isinstance(d["audio_start_s"], float)
    assert (d["speaker"], d["source"]) == ("GRID s1", "examples")
    assert Path(d["path"]).is_absolute()
    assert example_cache.name.startswith("grid_bbaf2n-") and example_cache.suffix == ".npz"
    assert 0 < example_cache.stat().st_size < 1_000_000  # compressed, ~60 KB per second
    blend_cols = [SIGNAL_NAMES.index(n) for n in BLENDSHAPE_NAMES]
    np.testing.assert_allclose(d["blend"], d["signals"][:, blend_cols], atol=1e-3)


def test_frame_to_logmel_index(example_cache: Path):
    d = load_clip_cache(example_cache)
    idx = frame_to_logmel_index(d["frame_times_s"], d["audio_start_s"])
    assert idx.dtype == np.int64 and abs(int(idx[0])) <= 1
    assert np.all(np.diff(idx) == 4)  # 40 ms per frame at 25 fps
    assert 0 <= idx[-1] < len(d["logmel"])
    np.testing.assert_array_equal(frame_to_logmel_index(np.array([1.004, 1.016]), 1.0), [0, 2])


def test_lips_are_scale_free(example_clip: Path, example_frames: np.ndarray, example_cache: Path,
                             tmp_path: Path):
    big = np.stack([cv2.resize(f, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
                    for f in example_frames])
    audio = load_audio(example_clip)
    path = write_av(tmp_path / "grid_2x.mp4", big, 25, audio.samples, audio.sample_rate_hz)
    small = load_clip_cache(example_cache)["lips"].astype(np.float64)
    large = load_clip_cache(build_clip_cache(Clip(path, "s", "x"), tmp_path / "c"))["lips"]
    diff = np.abs(small - large.astype(np.float64))
    assert small.shape == large.shape
    assert diff.mean() < 0.01 and diff.max() < 0.05  # lips span ~0.1-0.3 inter-ocular units


def test_existing_cache_is_not_rebuilt(example_clip: Path, example_cache: Path, cache_dir: Path,
                                       monkeypatch):
    def boom(clip):
        raise AssertionError("rebuilt an existing cache file")

    monkeypatch.setattr(cache_mod, "_clip_arrays", boom)
    mtime = example_cache.stat().st_mtime_ns
    assert build_clip_cache(Clip(example_clip, "GRID s1", "examples"), cache_dir) == example_cache
    assert build_cache([Clip(example_clip, "GRID s1", "examples")], cache_dir,
                       progress=False) == [example_cache]
    assert example_cache.stat().st_mtime_ns == mtime


def test_clip_without_face_is_skipped(tmp_path: Path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (20, 64, 64, 3), dtype=np.uint8)
    audio = 0.3 * np.sin(np.arange(16000) * 0.05)
    clip = Clip(write_av(tmp_path / "noise.mp4", frames, 25, audio), "nobody", "synthetic")
    skipped: list[str] = []
    assert build_cache([clip], tmp_path / "c", progress=False,
                       on_skip=lambda c, why: skipped.append(why)) == []
    assert len(skipped) == 1 and "\n" not in skipped[0]
    assert list((tmp_path / "c").glob("*.skip"))  # remembered: the next run does not re-analyse
    with pytest.raises(ClipSkipped):
        build_clip_cache(clip, tmp_path / "c")


@dataclass
class _Frame:
    index: int
    time_s: float
    image: np.ndarray


class _Scripted:
    def __init__(self, faces: dict[int, FaceDetection]) -> None:
        self.faces, self.n = faces, 0

    def detect(self, image: np.ndarray, time_s: float) -> list[FaceDetection]:
        self.n += 1
        return [self.faces[self.n - 1]] if self.n - 1 in self.faces else []

    def close(self) -> None:
        pass


def test_keep_crops_fills_gaps_and_is_off_by_default():
    pts = np.random.default_rng(3).random((478, 2)).astype(np.float32) * 100 + 50
    face = FaceDetection(pts, np.zeros(len(BLENDSHAPE_NAMES), np.float32), (50, 50, 150, 150))
    script = {i: face for i in range(12) if i not in (5, 6)}
    frames = [_Frame(i, i / 25, np.full((240, 320, 3), 90, np.uint8)) for i in range(12)]
    track = analyse_frames(frames, _Scripted(script), keep_crops=True).tracks[0]
    assert track.n_frames == len(track.mouth) == len(track.lips) == len(track.valid) == 12
    assert track.valid == [i not in (5, 6) for i in range(12)]
    assert track.mouth[0].shape == (48, 48) and track.mouth[0].dtype == np.uint8
    np.testing.assert_array_equal(track.mouth[5], track.mouth[4])
    assert np.isnan(track.lips[5].astype(np.float32)).all() and track.lips[0].dtype == np.float16
    plain = analyse_frames(frames, _Scripted(script)).tracks[0]
    assert plain.mouth == [] and plain.lips == [] and plain.valid == []


def _synthetic_clips() -> list[Clip]:
    clips = [Clip(Path(f"grid/s1/c{i:02d}.mpg"), "GRID s1", "grid") for i in range(40)]
    clips.append(Clip(Path("grid/other/like.mp4"), "GRID s1-like", "uoa"))
    for s in range(20):
        clips += [Clip(Path(f"web/spk{s}/c{k}.mp4"), f"spk{s}", "web") for k in range(1 + s % 3)]
    return clips


def test_speaker_split_is_disjoint_and_deterministic():
    clips = _synthetic_clips()
    durations = {c.path: 3.0 if c.source != "web" else 9.0 + len(c.path.name) % 3 for c in clips}
    train, val = speaker_split(clips, val_fraction=0.3, seed=0, durations=durations)
    assert (train, val) == speaker_split(clips, val_fraction=0.3, seed=0, durations=durations)
    groups_train = {speaker_group(c.speaker) for c in train}
    groups_val = {speaker_group(c.speaker) for c in val}
    assert not groups_train & groups_val and groups_val
    assert all(c in train for c in clips if speaker_group(c.speaker) == "GRID s1")
    assert len(train) + len(val) == len(clips)  # the cap does not bind here
    total = sum(durations.values())
    assert 0.2 * total <= sum(durations[c.path] for c in val) <= 0.3 * total + 1e-9


def test_speaker_split_caps_one_speaker_share_by_clips():
    clips = _synthetic_clips()
    train, val = speaker_split(clips, seed=1, max_group_share=0.5)
    s1 = [c for c in train if speaker_group(c.speaker) == "GRID s1"]
    assert 0 < len(s1) <= len(train) - len(s1)  # at most half of the train clips
    assert not {c.speaker for c in train} & {c.speaker for c in val}


def test_split_file_round_trip(tmp_path: Path):
    root = tmp_path / "clips"
    clips = [Clip(root / c.path, c.speaker, c.source) for c in _synthetic_clips()]
    train, val = speaker_split(clips)
    out = write_split(tmp_path / "split.jsonl", train, val, root=root)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert set(rows[0]) == {"path", "speaker", "split"} and not rows[0]["path"].startswith("/")
    train2, val2 = read_split(out, root=root)
    assert [c.path for c in train2] == [c.path for c in train]
    assert [c.speaker for c in val2] == [c.speaker for c in val]


def test_prepare_cli(example_clip: Path, example_cache: Path, cache_dir: Path, tmp_path: Path):
    runner = CliRunner()
    bad = runner.invoke(app, ["prepare", "--clips", str(tmp_path / "missing"), "--out",
                              str(tmp_path / "c")])
    assert bad.exit_code == 1 and "Traceback" not in bad.output
    spec = tmp_path / "clips.jsonl"
    spec.write_text(json.dumps({"path": str(example_clip), "speaker": "GRID s1"}) + "\n")
    ok = runner.invoke(app, ["prepare", "--clips", str(spec), "--out", str(cache_dir),
                             "--no-progress"])
    assert ok.exit_code == 0, ok.output
    assert "cached 1 of 1 clips" in ok.output and "MiB" in ok.output
