"""Audio-tower pre-training (avsync.train.audio_pretrain): targets, learning, save/load, labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from avsync.errors import AvsyncError
from avsync.models.syncnet import AUDIO_ROWS, FRAMES, N_MELS
from avsync.train import build_model
from avsync.train.audio_pretrain import (
    PHONES,
    LabelledAudio,
    PhoneHead,
    PretrainConfig,
    init_audio_tower,
    labelled_audio,
    pretrain_audio_tower,
    save_tower,
    step_targets,
)

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")


def test_step_targets_take_the_most_frequent_label_of_each_frame_step():
    labels = np.array([0, 0, 0, 5] + [7, 7, 3, 3] + [3, 3, 3, 1] + [2] * 4 + [9, 9, 9, 4], np.int64)
    assert step_targets(labels).tolist() == [0, 3, 3, 2, 9]  # a 2-2 tie goes to the lower class


def test_phone_head_gives_one_distribution_per_frame_step():
    head = PhoneHead(build_model("landmark", "debug").audio)
    out = head(torch.randn(3, AUDIO_ROWS, N_MELS))
    assert out.shape == (3, len(PHONES), FRAMES)


def _toy_files(n_files: int, seconds: float, rng: np.random.Generator) -> list[LabelledAudio]:
    """Log-mel-like rows whose class (0 or 1..3) sets which band group is loud, in runs."""
    out = []
    for i in range(n_files):
        n = int(seconds * 100)
        labels = np.repeat(rng.integers(0, 4, size=n // 8 + 1), 8)[:n]
        x = rng.normal(0, 0.3, size=(n, N_MELS)).astype(np.float32)
        for c in (1, 2, 3):
            x[labels == c, (c - 1) * 12:(c - 1) * 12 + 12] += 2.0
        out.append(LabelledAudio(f"toy{i}", x, labels.astype(np.int64)))
    return out


def test_pretraining_learns_phones_the_input_shows_and_changes_only_the_tower_convs():
    torch.manual_seed(0)
    tower = build_model("landmark", "debug").audio
    fc_before = tower.fc.weight.detach().clone()
    conv_before = tower.convs[0][0].weight.detach().clone()
    files = _toy_files(8, 6.0, np.random.default_rng(1))
    summary = pretrain_audio_tower(tower, files, PretrainConfig(steps=150, batch_size=32, warmup_steps=10,
                                                                holdout=0.25), log=None)
    assert summary["heldout_files"] == 2 and summary["train_files"] == 6
    assert summary["heldout_step_accuracy"] > summary["heldout_majority_accuracy"] + 0.3
    assert summary["heldout_step_accuracy"] > summary["heldout_step_accuracy_before"]
    assert torch.equal(tower.fc.weight, fc_before)  # the embedding layer is not pre-trained
    assert not torch.equal(tower.convs[0][0].weight, conv_before)


def test_pretraining_refuses_too_little_audio():
    files = [LabelledAudio("short", np.zeros((AUDIO_ROWS - 1, N_MELS), np.float32),
                           np.zeros(AUDIO_ROWS - 1, np.int64))] * 3
    with pytest.raises(ValueError, match="at least two files"):
        pretrain_audio_tower(build_model("landmark", "debug").audio, files, log=None)


def test_saved_tower_initialises_a_fresh_model_and_a_mismatched_one_is_a_clear_error(tmp_path):
    tower = build_model("landmark", "debug").audio
    with torch.no_grad():
        for p in tower.convs.parameters():
            p.add_(0.5)
    path = tmp_path / "tower.safetensors"
    save_tower(path, tower, {"steps": 3})
    fresh = build_model("landmark", "debug")
    meta = init_audio_tower(fresh, path)
    assert meta == {"steps": 3}
    for a, b in zip(tower.convs.state_dict().values(), fresh.audio.convs.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(AvsyncError, match="does not fit"):
        init_audio_tower(build_model("landmark", "small"), path)
    with pytest.raises(AvsyncError, match="no pre-trained audio tower"):
        init_audio_tower(fresh, tmp_path / "missing.safetensors")


def test_pocketsphinx_labels_real_speech_with_phones_on_the_10ms_grid():
    pytest.importorskip("pocketsphinx")
    wavs = sorted(LIBRIVOX.glob("*.wav")) if LIBRIVOX.is_dir() else []
    if not wavs:
        pytest.skip("Debian's pocketsphinx-testdata is not installed")
    from avsync.io import load_audio

    audio = load_audio(wavs[0])
    item = labelled_audio(wavs[0].name, audio.samples)
    assert len(item.labels) == len(item.logmel_z)
    assert abs(len(item.labels) - len(audio.samples) / 160) <= 4
    speech = item.labels[item.labels > 0]
    assert len(speech) > 0.5 * len(item.labels)  # read speech: mostly phones, not silence
    assert len(np.unique(speech)) >= 15  # many different phones, not one class
