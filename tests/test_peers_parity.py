"""The ports of SyncNet, the Wav2Lip expert, S3FD and their audio front-ends against outputs of the
reference implementations recorded once (tests/fixtures/make_peers_parity.py), under the same
random weights and inputs (tests/peers_common.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import peers_common as pc
import pytest
import torch

from avsync.peers.audio import syncnet_mfcc, wav2lip_mel
from avsync.peers.evaluate import expert_features, shift_distances, syncnet_offset
from avsync.peers.nets import SyncNetV2, Wav2LipExpert
from avsync.peers.s3fd import S3FDNet, detect_faces
from avsync.peers.weights import load_into

FIXTURE = Path(__file__).parent / "fixtures" / "peers_parity.npz"
REL_TOL = 1e-5


@pytest.fixture(scope="module")
def ref():
    return dict(np.load(FIXTURE))


def _close(ours: np.ndarray, theirs: np.ndarray) -> float:
    """Max abs difference relative to the reference's largest magnitude."""
    assert ours.shape == theirs.shape
    return float(np.abs(ours - theirs).max() / max(1.0, np.abs(theirs).max()))


def _saved(tmp_path: Path, model, name: str, wrap=None) -> Path:
    path = tmp_path / name
    state = pc.random_state(model)
    torch.save(wrap(state) if wrap else state, path)
    return path


def test_syncnet_features_distances_offset_match_reference(ref, tmp_path, one_thread):
    model = load_into(SyncNetV2(), _saved(tmp_path, SyncNetV2(), "syncnet_v2.model"), "syncnet_v2.model")
    crops = pc.frames(pc.SYNCNET_FRAMES, 224)
    samples = pc.pcm(pc.SYNCNET_FRAMES * 640 + 100).astype(np.float64) / 32768.0
    score = syncnet_offset(model, crops, samples)
    from avsync.peers.audio import to_int16_scale
    from avsync.peers.evaluate import syncnet_features

    lip, aud = syncnet_features(model, crops, syncnet_mfcc(to_int16_scale(samples)))
    assert _close(lip.numpy(), ref["sn_lip"]) < REL_TOL
    assert _close(aud.numpy(), ref["sn_aud"]) < REL_TOL
    dists = shift_distances(lip, aud, 15).numpy()
    assert _close(dists, ref["sn_dists"]) < REL_TOL
    assert score.n_windows == len(ref["sn_dists"])
    assert score.offset_frames == -int(ref["sn_av_offset"])  # syncnet's "AV offset k" is -k here
    assert score.lse_d == pytest.approx(float(ref["sn_minval"]), rel=REL_TOL)
    # LSE-C is a difference of two ~2e4 means: compare it on the scale of the distances
    assert abs(score.lse_c - float(ref["sn_conf"])) <= REL_TOL * float(ref["sn_minval"])
    np.testing.assert_array_equal(np.argsort(score.mean_dist), np.argsort(ref["sn_dists"].mean(0)))


def test_wav2lip_mel_and_expert_embeddings_match_reference(ref, tmp_path, one_thread):
    mel = wav2lip_mel(ref["w2l_wav"])
    assert np.abs(mel - ref["w2l_mel"]).max() < 1e-5
    path = _saved(tmp_path, Wav2LipExpert(), "lipsync_expert.pth",
                  lambda s: {"state_dict": {f"module.{k}": v for k, v in s.items()}, "optimizer": None,
                             "global_step": 0, "global_epoch": 0})
    model = load_into(Wav2LipExpert(), path, "lipsync_expert.pth")
    faces, audio = expert_features(model, pc.frames(pc.EXPERT_FRAMES, 96), mel)
    assert np.abs(faces.numpy() - ref["w2l_face_emb"]).max() < REL_TOL
    assert np.abs(audio.numpy() - ref["w2l_audio_emb"]).max() < REL_TOL


def test_s3fd_boxes_match_reference(ref, tmp_path, one_thread):
    torch.save(pc.s3fd_state(), tmp_path / "sfd_face.pth")
    net = load_into(S3FDNet(), tmp_path / "sfd_face.pth", "sfd_face.pth")
    boxes = detect_faces(net, pc.s3fd_image(), conf_th=pc.S3FD_CONF_TH, scale=pc.S3FD_SCALE)
    theirs = ref["s3fd_boxes"]
    assert len(theirs) > 3 and boxes.shape == theirs.shape
    assert np.abs(boxes - theirs).max() < 1e-3  # pixels and scores, float32 on both sides


def test_syncnet_mfcc_shape_rate():
    mfcc = syncnet_mfcc(np.zeros(16000))
    assert mfcc.shape == (13, 99) and np.isfinite(mfcc).all()
