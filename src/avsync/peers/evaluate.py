"""syncnet_python's evaluation and its Wav2Lip-expert counterpart, on 25 fps face crops + 16 kHz audio.

SyncNet (``syncnet_offset``): window i = crop frames i..i+4 and MFCC steps 4i..4i+19 (0.2 s each;
one video frame = 4 MFCC steps = 640 samples); windows i < min(T, N // 640) - 5. Distances between
every video feature i and the audio features i - V .. i + V (zero features past the ends, as the
reference pads them), averaged over i: ``mean_dist`` (2V+1,). LSE-D = its minimum, LSE-C = its
median - minimum, and the best shift j* gives syncnet's "AV offset" V - j*. avsync's sign
convention (offset > 0: audio LATE) is the opposite: ``offset_frames = j* - V`` (syncnet's
"AV offset 3" is ``offset_frames = -3``).

Wav2Lip expert (``expert_offset``): window i = the lower halves of crops i..i+4 against log-mel
steps int(3.2 i) .. +16, as Wav2Lip trains it; for each shift s the mean cosine similarity of face
window i with audio window i + s over the pairs that exist; offset = the best shift, confidence =
best - median (the same reading as LSE-C, on similarities), ``sync_prob`` = mean similarity at 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from avsync.peers.audio import syncnet_mfcc, to_int16_scale, wav2lip_mel
from avsync.peers.nets import SyncNetV2, Wav2LipExpert

PEER_FPS: float = 25.0
"""Both models were trained on 25 fps video; any other rate is resampled to it first."""
WINDOW_FRAMES: int = 5
MFCC_STEPS_PER_FRAME: int = 4
MFCC_WINDOW_STEPS: int = 20
SAMPLES_PER_PEER_FRAME: int = 640  # 16 kHz / 25 fps
MEL_STEPS_PER_SECOND: float = 80.0
MEL_WINDOW_STEPS: int = 16
DEFAULT_VSHIFT: int = 15
BATCH: int = 20


@dataclass
class PeerScore:
    """One face track scored by a peer model.

    offset_frames: best shift in avsync's convention (> 0: audio late), at 25 fps.
    mean_dist: (2V+1,) mean distance (SyncNet) or 1 - mean cosine similarity (expert) per shift
    -V..V. lse_d / lse_c: min and median - min of mean_dist (SyncNet; for the expert the same
    statistics of 1 - similarity). sync_prob: expert only, mean similarity at shift 0.
    """

    offset_frames: int
    lse_d: float
    lse_c: float
    mean_dist: np.ndarray
    n_windows: int
    sync_prob: float | None = None


def shift_distances(video_feat: torch.Tensor, audio_feat: torch.Tensor, vshift: int) -> torch.Tensor:
    """(N, 2V+1) distance of video feature i to audio feature i + j - V (zero vectors past the ends)."""
    n = len(video_feat)
    padded = F.pad(audio_feat, (0, 0, vshift, vshift))
    idx = torch.arange(n)[:, None] + torch.arange(2 * vshift + 1)[None, :]
    return F.pairwise_distance(video_feat[:, None, :].expand(-1, 2 * vshift + 1, -1), padded[idx], p=2.0)


def _score(mean_dist: torch.Tensor, vshift: int, n: int) -> PeerScore:
    minval, minidx = torch.min(mean_dist, 0)
    conf = torch.median(mean_dist) - minval
    return PeerScore(int(minidx) - vshift, float(minval), float(conf),
                     mean_dist.numpy().astype(np.float64), n)


@torch.no_grad()
def syncnet_features(model: SyncNetV2, crops_bgr: np.ndarray, mfcc: np.ndarray,
                     batch: int = BATCH) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 1024) lip and audio features of the N = T - 5 windows.

    crops_bgr: (T, 224, 224, 3) uint8 BGR 25 fps crops, T <= audio samples // 640 (as the reference
    truncates); mfcc: (13, M) (:func:`syncnet_mfcc`).
    """
    n = len(crops_bgr) - WINDOW_FRAMES
    if n <= 0:
        raise ValueError(f"need more than {WINDOW_FRAMES} frames of face and audio, got {len(crops_bgr)}")
    if MFCC_STEPS_PER_FRAME * (n - 1) + MFCC_WINDOW_STEPS > mfcc.shape[1]:
        raise ValueError(f"{len(crops_bgr)} frames need more than {mfcc.shape[1]} MFCC steps")
    vid, aud = [], []
    for a in range(0, n, batch):
        idx = range(a, min(n, a + batch))
        clips = np.stack([crops_bgr[i:i + WINDOW_FRAMES] for i in idx])  # (B, 5, H, W, 3)
        x = torch.from_numpy(np.ascontiguousarray(clips.transpose(0, 4, 1, 2, 3), dtype=np.float32))
        vid.append(model.forward_lip(x))
        m = np.stack([mfcc[:, MFCC_STEPS_PER_FRAME * i: MFCC_STEPS_PER_FRAME * i + MFCC_WINDOW_STEPS]
                      for i in idx])
        aud.append(model.forward_aud(torch.from_numpy(m[:, None].astype(np.float32))))
    return torch.cat(vid), torch.cat(aud)


def syncnet_offset(model: SyncNetV2, crops_bgr: np.ndarray, samples: np.ndarray,
                   vshift: int = DEFAULT_VSHIFT) -> PeerScore:
    """SyncNet offset, LSE-D and LSE-C of one track (see the module docstring).

    crops_bgr: (T, 224, 224, 3) uint8 BGR at 25 fps; samples: (N,) float [-1, 1] at 16 kHz,
    sample 0 at the time of crop 0.
    """
    pcm = to_int16_scale(samples)
    n_frames = min(len(crops_bgr), len(pcm) // SAMPLES_PER_PEER_FRAME)
    vf, af = syncnet_features(model, crops_bgr[:n_frames], syncnet_mfcc(pcm))
    # mean over windows along a contiguous (2V+1, N) layout: the reference's summation order
    return _score(shift_distances(vf, af, vshift).t().contiguous().mean(1), vshift, len(vf))


def expert_face_windows(crops_bgr: np.ndarray, idx: range) -> np.ndarray:
    """(B, 15, 48, 96) float32: lower halves of 96x96 BGR crops i..i+4 in 0..1, frame-major channels."""
    half = crops_bgr.shape[1] // 2
    win = np.stack([crops_bgr[i:i + WINDOW_FRAMES, half:] for i in idx])  # (B, 5, 48, 96, 3)
    b, t, h, w, c = win.shape
    return win.transpose(0, 1, 4, 2, 3).reshape(b, t * c, h, w).astype(np.float32) / 255.0


def mel_start(frame: int) -> int:
    """First log-mel step of the window of 25 fps frame ``frame`` (Wav2Lip's int(80 * frame / 25))."""
    return int(MEL_STEPS_PER_SECOND * (frame / PEER_FPS))


@torch.no_grad()
def expert_features(model: Wav2LipExpert, crops_bgr: np.ndarray, mel: np.ndarray,
                    batch: int = BATCH) -> tuple[torch.Tensor, torch.Tensor]:
    """(Nv, 512) face and (Na, 512) audio unit embeddings of every complete window.

    crops_bgr: (T, 96, 96, 3) uint8 BGR; mel: (80, M) (:func:`wav2lip_mel`).
    """
    nv = len(crops_bgr) - WINDOW_FRAMES + 1
    na = 0
    while mel_start(na) + MEL_WINDOW_STEPS <= mel.shape[1]:
        na += 1
    if nv <= 0 or na <= 0:
        raise ValueError("need at least 5 frames of face and 0.2 s of audio")
    vid = [model.embed_face(torch.from_numpy(expert_face_windows(crops_bgr, range(a, min(nv, a + batch)))))
           for a in range(0, nv, batch)]
    aud = []
    for a in range(0, na, batch):
        m = np.stack([mel[:, mel_start(i): mel_start(i) + MEL_WINDOW_STEPS]
                      for i in range(a, min(na, a + batch))])
        aud.append(model.embed_audio(torch.from_numpy(m[:, None].astype(np.float32))))
    return torch.cat(vid), torch.cat(aud)


def expert_offset(model: Wav2LipExpert, crops_bgr: np.ndarray, samples: np.ndarray,
                  vshift: int = DEFAULT_VSHIFT) -> PeerScore:
    """Wav2Lip-expert offset and confidence of one track (see the module docstring)."""
    vf, af = expert_features(model, crops_bgr, wav2lip_mel(samples))
    sims = vf @ af.T  # (Nv, Na) cosine similarities
    mean_dist = torch.empty(2 * vshift + 1, dtype=torch.float64)
    for j, s in enumerate(range(-vshift, vshift + 1)):
        i = torch.arange(max(0, -s), min(len(vf), len(af) - s))
        mean_dist[j] = 1.0 - sims[i, i + s].double().mean() if len(i) else float("inf")
    if not torch.isfinite(mean_dist).any():
        raise ValueError("the face and audio windows do not overlap")
    score = _score(mean_dist, vshift, len(vf))
    score.sync_prob = float(1.0 - mean_dist[vshift])
    return score
