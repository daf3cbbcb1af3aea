"""Dubbing: ``avsync generate --video FACE --audio NEW -o OUT`` on a tiny real clip, and its errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from avsync.cli import app
from avsync.io import load_audio, probe, write_av
from avsync.lipgen.dub import mouth_mask

pytestmark = pytest.mark.usefixtures("one_thread")

FPS = 25
N_FRAMES = 40  # 1.6 s of the example's video
NEW_AUDIO_S = 1.2  # shorter than the video: the output lasts min(video, audio)


def run(*args: object):
    res = CliRunner().invoke(app, [str(a) for a in args])
    return res.exit_code, res.stdout, res.stderr


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tiny(example_clip: Path, example_frames: np.ndarray, tmp_path_factory: pytest.TempPathFactory):
    """(face video: the example's first 1.6 s, new audio: its speech from 1.5 s on, frames)."""
    folder = tmp_path_factory.mktemp("dub")
    samples = load_audio(example_clip).samples
    video = write_av(folder / "face.mp4", example_frames[:N_FRAMES], FPS, samples[: N_FRAMES * 640])
    speech = samples[24000 : 24000 + int(NEW_AUDIO_S * 16000)]
    new_audio = write_av(folder / "new.wav", None, None, speech)
    return video, new_audio, example_frames[:N_FRAMES], speech


def test_mouth_mask_is_feathered_and_centred() -> None:
    lips = np.stack([32 + 12 * np.cos(np.linspace(0, 2 * np.pi, 40)),
                     34 + 5 * np.sin(np.linspace(0, 2 * np.pi, 40))], axis=1)
    m = mouth_mask(lips)
    assert m.shape == (64, 64) and m.min() >= 0 and m.max() <= 1
    assert m[34, 32] > 0.99 and m[0, 0] < 1e-3 and m[63, 63] < 1e-3 and m[5, 32] < 1e-3
    assert ((m > 0.05) & (m < 0.95)).sum() > 50  # a soft edge, not a hard cut
    wide = mouth_mask(lips * [1.6, 1.0] - [19.2, 0.0])  # wider lips widen the mask
    assert (wide > 0.5).sum() > (m > 0.5).sum()
    assert mouth_mask(np.full((40, 2), np.nan))[34, 32] > 0.99  # no landmarks: the ellipse alone


def test_dub_regenerates_the_mouth_keeps_the_rest_and_muxes_the_new_audio(tiny, tmp_path: Path) -> None:
    from avsync.io import iter_video_frames
    from avsync.lipgen.generate import DEFAULT_GENERATOR

    if not DEFAULT_GENERATOR.is_file():
        pytest.skip("no generator shipped")
    video, new_audio, frames, speech = tiny
    before = _digest(video), _digest(new_audio)
    out = tmp_path / "dubbed.mp4"
    code, stdout, stderr = run("generate", "--video", video, "--audio", new_audio, "-o", out, "--no-progress")
    assert code == 0, stderr
    assert "mouth regenerated in 30 frames" in stdout
    assert (_digest(video), _digest(new_audio)) == before  # inputs untouched
    info = probe(out)
    n = int(round(NEW_AUDIO_S * FPS))
    assert info.has_audio and info.width == frames.shape[2] and info.height == frames.shape[1]
    got = np.stack([f.image for f in iter_video_frames(out, max_side=None)]).astype(np.float32)
    assert len(got) == n
    ref = frames[:n].astype(np.float32)
    diff = np.abs(got - ref).mean(axis=(0, 3))  # (H, W) mean change per pixel
    h = diff.shape[0]
    assert diff[: h // 3].mean() < 3.0  # forehead/eyes/background: only codec noise
    ys, xs = np.unravel_index(np.argsort(diff, axis=None)[-200:], diff.shape)
    assert ys.mean() > 0.55 * h  # what changed most is low on the face, the mouth
    assert diff.max() > 15.0
    dubbed = load_audio(out).samples
    k = min(len(dubbed), len(speech)) - 800
    r = np.corrcoef(dubbed[:k], speech[:k])[0, 1]
    assert r > 0.9  # the new speech, not the video's own
    assert abs(len(dubbed) / 16000 - n / FPS) < 0.1


def test_dub_refuses_bad_input_in_one_line(tiny, tmp_path: Path) -> None:
    video, new_audio, _, _ = tiny
    noface = write_av(tmp_path / "noise.mp4",
                      (np.random.default_rng(0).random((10, 96, 128, 3)) * 255).astype(np.uint8), FPS,
                      np.zeros(6400, np.float32))
    kept = tmp_path / "kept.mp4"
    kept.write_bytes(b"precious")
    cases = [
        (("--video", video, "--image", video), "exactly one of"),
        (("--video", video, "--size", 128), "--size"),
        (("--video", noface), "no face"),
        (("--video", tmp_path / "missing.mp4"), "missing.mp4"),
    ]
    for extra, needle in cases:
        out = tmp_path / "o.mp4"
        code, _, stderr = run("generate", "--audio", new_audio, "-o", out, "--no-progress", *extra)
        lines = [ln for ln in stderr.splitlines() if ln.strip()]
        assert code == 1 and len(lines) == 1 and needle in lines[0], (extra, stderr)
        assert "Traceback" not in stderr and not out.exists()
    code, _, stderr = run("generate", "--audio", new_audio, "--video", video, "-o", kept, "--no-progress")
    assert code == 1 and "--overwrite" in stderr and kept.read_bytes() == b"precious"
    code, _, stderr = run("generate", "--audio", new_audio, "--video", video, "-o", video, "--no-progress",
                          "--overwrite")
    assert code == 1 and "input" in stderr
