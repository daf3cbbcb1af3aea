"""Generation data, long-audio blending, checkpoints, the tiny training run and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from avsync.data.cache import CACHE_KEYS
from avsync.errors import AvsyncError
from avsync.lipgen.bundle import load_bundle, save_bundle
from avsync.lipgen.generate import audio_rows, blend_weights, generate_frames, window_starts
from avsync.lipgen.model import GeneratorConfig, LipGenerator
from avsync.lipgen.windows import GenWindows, frame_rows, load_gen_clip, resample_to_clock

pytestmark = pytest.mark.usefixtures("one_thread")


def fake_clip(
    path: Path,
    source: str,
    speaker: str,
    n_frames: int = 60,
    fps: float = 25.0,
    seed: int = 0,
    gap: tuple[int, int] | None = None,
) -> Path:
    """A generation-cache file of a synthetic 'mouth' (dark ellipse) opening with the audio."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_frames) / fps
    opening = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t + seed)
    rgb = np.full((n_frames, 64, 64, 3), (180, 120, 110), np.uint8)
    for i, o in enumerate(opening):
        cv2.ellipse(rgb[i], (32, 32), (16, int(2 + 10 * o)), 0, 0, 360, (60, 20, 20), -1)
    lips = np.zeros((n_frames, 40, 2), np.float16)
    lips[:, :, 0] = 32 + 16 * np.cos(np.linspace(0, 2 * np.pi, 40))
    lips[:, :, 1] = 32 + (2 + 10 * opening[:, None]) * np.sin(np.linspace(0, 2 * np.pi, 40))
    n_rows = int(n_frames / fps * 100) + 10
    env = np.interp(np.arange(n_rows) / 100, t, opening)
    logmel = (rng.standard_normal((n_rows, 40)) + 4 * env[:, None] - 8).astype(np.float16)
    valid = np.ones(n_frames, bool)
    if gap is not None:
        valid[gap[0] : gap[1]] = False
    arrays = {
        "fps": np.float64(fps),
        "frame_times_s": t,
        "mouth": np.zeros((n_frames, 48, 48), np.uint8),
        "lips": np.zeros((n_frames, 40, 2), np.float16),
        "blend": np.zeros((n_frames, 10), np.float16),
        "signals": np.zeros((n_frames, 19), np.float32),
        "valid": valid,
        "logmel": logmel,
        "audio_start_s": np.float64(0.0),
        "speaker": np.array(speaker),
        "source": np.array("fake"),
        "path": np.array(f"/fake/{source}"),
        "rgb": rgb,
        "lips_px": lips,
    }
    assert set(CACHE_KEYS) <= set(arrays)
    np.savez_compressed(path, **arrays)
    return path


def fake_cache(tmp_path: Path, speakers: list[tuple[str, str]]) -> tuple[Path, Path]:
    """A generation cache of one fake clip per (speaker, split side) and its split file."""
    cache = tmp_path / "cache"
    cache.mkdir()
    rows = []
    for i, (spk, side) in enumerate(speakers):
        src = f"{spk}/clip{i}.mp4"
        fake_clip(cache / f"clip{i}-0123456789abcdef.npz", src, spk, seed=i)
        rows.append({"path": src, "speaker": spk, "split": side})
    split = tmp_path / "split.jsonl"
    split.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return cache, split


@pytest.fixture
def gen_cache(tmp_path: Path) -> tuple[Path, Path]:
    return fake_cache(tmp_path, [("a", "train"), ("b", "train"), ("c", "val")])


def test_resample_to_clock_keeps_25_and_halves_50() -> None:
    t25 = np.arange(50) / 25
    assert (resample_to_clock(t25) == np.arange(50)).all()
    t50 = np.arange(100) / 50
    assert (resample_to_clock(t50) == np.arange(0, 100, 2)).all()


def test_frame_rows_centre_four_rows_on_the_frame() -> None:
    rows = frame_rows(np.array([0.0, 0.04, 0.08]), audio_start_s=0.0)
    assert rows.tolist() == [-2, 2, 6]  # rows 4k-2 .. 4k+1: -20, -10, 0, +10 ms around frame k


def test_windows_skip_missed_faces(tmp_path: Path) -> None:
    clip = load_gen_clip(fake_clip(tmp_path / "x.npz", "x/x.mp4", "x", n_frames=60, gap=(20, 22)))
    starts = clip.window_starts(stride=1)
    assert len(starts) and all(not (s <= 21 and s + 16 > 20) for s in starts)


def test_window_batch_shapes(gen_cache: tuple[Path, Path]) -> None:
    cache, _ = gen_cache
    ds = GenWindows([load_gen_clip(f) for f in sorted(cache.glob("*.npz"))], stride=1)
    b = ds.sample(np.random.default_rng(0), 3)
    assert b["video"].shape == (3, 3, 16, 64, 64) and b["audio"].shape == (3, 64, 40)
    assert b["identity"].shape == (3, 3, 64, 64) and b["lips"].shape == (3, 16, 40, 2)
    assert b["video"].min() >= -1 and b["video"].max() <= 1
    assert not torch.equal(b["audio"], b["wrong_audio"])


def test_not_a_generation_cache(tmp_path: Path) -> None:
    p = fake_clip(tmp_path / "y.npz", "y/y.mp4", "y")
    d = dict(np.load(p))
    del d["rgb"]
    np.savez(p, **d)
    with pytest.raises(ValueError, match="generation cache"):
        load_gen_clip(p)


@given(st.integers(1, 400))
def test_windows_cover_every_frame(n: int) -> None:
    starts = window_starts(n)
    covered = np.zeros(max(n, 16), bool)
    for s in starts:
        covered[s : s + 16] = True
    assert covered[:n].all() and starts[0] == 0 and starts[-1] + 16 == max(n, 16)
    assert all(b - a <= 8 for a, b in zip(starts, starts[1:], strict=False))


def test_blend_weights_positive_peak_in_middle() -> None:
    w = blend_weights()
    assert (w > 0).all() and w[7] == w.max() and w[0] == w[-1]


def test_audio_rows_are_frame_aligned() -> None:
    logmel = np.arange(200, dtype=np.float32)[:, None].repeat(40, 1)
    rows = audio_rows(logmel, 20)
    assert rows[4 * 5 + 2, 0] == 20  # frame 5's third row is the row at its own time (50 ms)
    assert rows[0, 0] == 0 and rows.shape == (80, 40)


class _Echo(torch.nn.Module):
    """A 'generator' that draws the identity, brightened by its window's mean audio."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, audio: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        level = audio.mean(dim=(1, 2))[:, None, None, None, None]
        return (identity[:, :, None].expand(-1, -1, 16, -1, -1) * 0 + level).clamp(-1, 1)


def test_generate_frames_blends_windows() -> None:
    # audio level = frame index / 100 -> each frame's value ~ its windows' mean audio
    n = 40
    logmel = np.repeat((np.arange(4 * n + 8) / 400.0)[:, None], 40, 1).astype(np.float32)
    frames = generate_frames(_Echo(), logmel, np.zeros((64, 64, 3), np.uint8), n)
    assert frames.shape == (n, 64, 64, 3)
    values = frames[:, 0, 0, 0].astype(int)
    assert (np.diff(values) >= 0).all()  # blended values rise smoothly, no jumps back at borders
    assert values[-1] > values[0]


def test_bundle_round_trip_and_bad_files(tmp_path: Path) -> None:
    torch.manual_seed(0)
    g = LipGenerator(GeneratorConfig.debug()).eval()
    path = save_bundle(tmp_path / "g.safetensors", {"generator": g}, {"note": 1}, half=True)
    nets, meta = load_bundle(path)
    a, i = torch.randn(1, 64, 40), torch.rand(1, 3, 64, 64)
    assert torch.allclose(nets["generator"](a, i), g(a, i), atol=2e-2)
    assert meta["metrics"] == {"note": 1}
    with pytest.raises(AvsyncError, match="no landmarks"):
        load_bundle(path, ("landmarks",))
    (tmp_path / "bad.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(AvsyncError, match="not a readable"):
        load_bundle(tmp_path / "bad.safetensors")
    with pytest.raises(AvsyncError, match="not found"):
        load_bundle(tmp_path / "missing.safetensors")


def test_tiny_training_run_writes_every_checkpoint(gen_cache: tuple[Path, Path], tmp_path: Path) -> None:
    from avsync.lipgen.pipeline import GenRecipe, train_all

    cache, split = gen_cache
    out = tmp_path / "run"
    summary = train_all(cache, out, GenRecipe.debug(), split=split, log=None)
    for name in ("critics", "generator", "generator_rec"):
        assert (out / f"{name}.safetensors").is_file()
    assert (out / "curves.png").stat().st_size > 1000
    nets, _ = load_bundle(out / "generator.safetensors")
    assert {"generator", "landmarks", "flow", "discriminator"} <= set(nets)
    assert summary["generator"]["val_l1"] > 0 and "val_epe_px" in summary["critics"]


def test_cli_train_generator_tiny_run(gen_cache: tuple[Path, Path], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from avsync.cli import app

    cache, split = gen_cache
    out = tmp_path / "cli_run"
    res = CliRunner().invoke(
        app,
        [
            "train",
            "generator",
            "--cache",
            str(cache),
            "--out",
            str(out),
            "--preset",
            "debug",
            "--split",
            str(split),
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout.strip().splitlines()[-1])["train_windows"] > 0
    assert (out / "generator.safetensors").is_file() and (out / "run.json").is_file()


def test_training_modules_import_without_the_media_stack() -> None:
    """A GPU box has torch but no PyAV / MediaPipe / OpenCV: training must still import."""
    import subprocess
    import sys

    code = ("import sys\nfor m in ('av', 'cv2', 'mediapipe'): sys.modules[m] = None\n"
            "import avsync.train, avsync.lipgen.pipeline, avsync.lipgen.generate, avsync.lipgen.bundle\n"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-500:]


def test_corrupt_cache_file_is_one_clear_error_and_no_run_folder(tmp_path: Path) -> None:
    from avsync.lipgen.pipeline import GenRecipe, train_all

    (tmp_path / "broken.npz").write_bytes(b"not an npz")
    with pytest.raises(AvsyncError, match="broken.npz: not a readable cache file"):
        train_all(tmp_path, tmp_path / "run", GenRecipe.debug(), log=None)
    assert not (tmp_path / "run").exists()
