"""Peer models (avsync.peers): weights loading and its one-line errors, the registry/CLI wiring,
the 25 fps resampling, the crop framing, the sign convention, and end to end on the example clip
with random weights (no real weights exist here; parity with the references: test_peers_parity)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import peers_common as pc
import pytest
import torch
from typer.testing import CliRunner

from avsync.cli import app
from avsync.errors import AvsyncError
from avsync.models.registry import create_model
from avsync.peers.crops import resample_indices, syncnet_crop
from avsync.peers.evaluate import _score, shift_distances
from avsync.peers.nets import SyncNetV2, Wav2LipExpert
from avsync.peers.weights import load_into


@pytest.fixture(scope="module")
def syncnet_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("w") / "syncnet_v2.model"
    torch.save(pc.random_state(SyncNetV2()), path)
    return path


@pytest.fixture(scope="module")
def expert_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("w") / "lipsync_expert.pth"
    state = {f"module.{k}": v for k, v in pc.random_state(Wav2LipExpert()).items()}
    torch.save({"state_dict": state, "optimizer": None, "global_step": 7, "global_epoch": 1}, path)
    return path


def test_state_dict_with_reference_keys_loads(syncnet_file):
    state = torch.load(syncnet_file, weights_only=True)
    assert "netcnnlip.0.weight" in state and tuple(state["netfcaud.3.weight"].shape) == (1024, 512)
    model = load_into(SyncNetV2(), syncnet_file, "syncnet_v2.model")
    assert not model.training
    assert torch.equal(model.netcnnaud[0].weight, state["netcnnaud.0.weight"])


def test_old_state_dict_without_bn_counters_loads(tmp_path):
    state = {k: v for k, v in pc.random_state(SyncNetV2()).items() if "num_batches_tracked" not in k}
    torch.save(state, tmp_path / "old.model")
    load_into(SyncNetV2(), tmp_path / "old.model", "syncnet_v2.model")


@pytest.mark.parametrize("damage", ["missing", "shape", "extra"])
def test_mismatched_state_dict_is_one_line_error(tmp_path, damage):
    state = pc.random_state(SyncNetV2())
    if damage == "missing":
        del state["netfclip.3.bias"]
    elif damage == "shape":
        state["netcnnaud.0.weight"] = torch.zeros(64, 1, 5, 5)
    else:
        state["head.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "bad.model")
    with pytest.raises(AvsyncError) as info:
        load_into(SyncNetV2(), tmp_path / "bad.model", "syncnet_v2.model")
    msg = str(info.value)
    assert "\n" not in msg and "not syncnet_v2.model" in msg
    assert {"missing": "netfclip.3.bias", "shape": "(64, 1, 5, 5)", "extra": "head.weight"}[damage] in msg


def test_corrupt_and_foreign_files_are_one_line_errors(tmp_path, syncnet_file, expert_file):
    (tmp_path / "text.model").write_text("hello")
    (tmp_path / "cut.model").write_bytes(syncnet_file.read_bytes()[:5000])
    for bad in ("text.model", "cut.model", "absent.model"):
        with pytest.raises(AvsyncError) as info:
            load_into(SyncNetV2(), tmp_path / bad, "syncnet_v2.model")
        assert "\n" not in str(info.value)
    with pytest.raises(AvsyncError, match="not syncnet_v2.model: .* missing"):
        load_into(SyncNetV2(), expert_file, "syncnet_v2.model")  # the other model's file


def test_registry_needs_weights(syncnet_file):
    with pytest.raises(AvsyncError, match="needs --weights"):
        create_model("syncnet_v2")
    with pytest.raises(AvsyncError, match="only to the peer methods"):
        create_model("avcorr", weights=syncnet_file)
    assert create_model("syncnet_v2", weights=syncnet_file).name == "syncnet_v2"


def test_offset_sign_convention():
    """Audio late by d frames (audio feature j+d matches video feature j) -> offset_frames = +d
    (syncnet_python would print 'AV offset' -d)."""
    g = torch.Generator().manual_seed(0)
    video = torch.randn(40, 16, generator=g)
    for d in (-4, 0, 3):
        audio = torch.randn(40, 16, generator=g)
        for j in range(40):
            if 0 <= j - d < 40:
                audio[j] = video[j - d]
        score = _score(shift_distances(video, audio, 15).mean(0), 15, 40)
        assert score.offset_frames == d and score.lse_c > 0


def test_resample_to_25fps():
    t30 = np.arange(90) / 30.0  # 3 s at 30 fps -> 25 fps grid over 0 .. 2.967 s
    idx = resample_indices(t30)
    assert len(idx) == 75 and idx[0] == 0
    assert np.abs(t30[idx] - np.arange(75) / 25.0).max() <= 0.5 / 30 + 1e-9
    t25 = 1.5 + np.arange(50) / 25.0
    np.testing.assert_array_equal(resample_indices(t25), np.arange(50))


@pytest.mark.parametrize("cx,cy,s", [(160.0, 120.0, 50.0), (20.3, 230.7, 61.9)])
def test_syncnet_crop_matches_pad_then_slice(cx, cy, s):
    """crop_video pads the frame by int(s (1 + 2 cs)) with 110 and slices it; ours crops directly."""
    image = pc.frames(1, 240)[0][:, :, ::-1].copy()
    image = np.concatenate([image, image[:, :80]], 1)  # 240 x 320
    cs, bsi = 0.4, int(s * 1.8)
    padded = np.pad(image, ((bsi, bsi), (bsi, bsi), (0, 0)), "constant", constant_values=(110, 110))
    my, mx = cy + bsi, cx + bsi
    rows = slice(int(my - s), int(my + s * (1 + 2 * cs)))
    cols = slice(int(mx - s * (1 + cs)), int(mx + s * (1 + cs)))
    want = cv2.resize(padded[rows, cols], (224, 224))
    np.testing.assert_array_equal(syncnet_crop(image, cx, cy, s), want)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_metrics_lse_end_to_end(example_clip, syncnet_file, one_thread):
    before = _digest(example_clip)
    res = CliRunner().invoke(app, ["metrics", str(example_clip), "--lse", "--weights", str(syncnet_file),
                                   "--json"])
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout.strip().splitlines()[-1])
    assert np.isfinite(row["lse_d"]) and row["lse_d"] > 0 and np.isfinite(row["lse_c"]) and row["lse_c"] >= 0
    assert -15 <= row["offset_frames"] <= 15
    assert row["offset_ms"] == pytest.approx(40.0 * row["offset_frames"])
    assert row["syncnet_av_offset"] == -row["offset_frames"]  # 25 fps clip
    assert row["tracks"][0]["windows"] == 75 - 5  # 3 s at 25 fps, 5-frame windows
    assert _digest(example_clip) == before


def test_detect_wav2lip_expert_end_to_end(example_clip, expert_file, one_thread):
    before = _digest(example_clip)
    res = CliRunner().invoke(app, ["detect", str(example_clip), "--method", "wav2lip_expert", "--weights",
                                   str(expert_file), "--json", "--no-progress"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["method"] == "wav2lip_expert" and out["lse_d"] is None
    assert len(out["curve"]["score"]) == 31 and -1.0 <= out["peer"]["tracks"][0]["sync_prob"] <= 1.0
    assert _digest(example_clip) == before


def test_cli_errors_are_one_line(example_clip, tmp_path, expert_file):
    (tmp_path / "bad.model").write_bytes(b"\x80\x04not a pickle")
    runner = CliRunner()
    for args in (["detect", str(example_clip), "--method", "syncnet_v2"],
                 ["detect", str(example_clip), "--method", "syncnet_v2", "--weights", str(expert_file)],
                 ["metrics", str(example_clip), "--lse", "--weights", str(tmp_path / "bad.model")],
                 ["metrics", str(example_clip), "--weights", str(expert_file)]):
        res = runner.invoke(app, args)
        assert res.exit_code == 1
        assert res.exception is None or isinstance(res.exception, SystemExit)
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr


def test_too_long_for_memory_is_one_line_error(example_clip, expert_file, monkeypatch):
    import avsync.peers.pipeline as pipeline

    monkeypatch.setattr(pipeline, "MAX_CROP_FRAMES", 50)  # the 3 s clip has 75 frames at 25 fps
    with pytest.raises(AvsyncError, match="at most 50 track frames"):
        create_model("wav2lip_expert", weights=expert_file).detect_file(example_clip)
