"""The peer models as avsync methods: ``create_model("syncnet_v2", weights=PATH)``.

They need the user's weights (``--weights``) and score whole files (``detect_file``), not the
landmark-signal tracks the other methods score; ``avsync detect`` dispatches to ``detect_file``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from avsync.errors import AvsyncError
from avsync.face.landmarks import DEFAULT_BACKEND
from avsync.models.registry import SyncInput, register_model
from avsync.peers import PEER_METHODS


class PeerMethod:
    """A loaded peer model (SyncNet v2 or the Wav2Lip expert), optionally with S3FD for the crops."""

    needs_neural = False

    def __init__(self, name: str, weights: str | Path | None, s3fd_weights: str | Path | None = None):
        from avsync.peers.weights import load_into

        if not weights:
            raise AvsyncError(f"method {name} needs --weights PATH: {PEER_METHODS[name]}")
        if name == "syncnet_v2":
            from avsync.peers.nets import SyncNetV2 as Net
        else:
            from avsync.peers.nets import Wav2LipExpert as Net
        self.name = name
        self.weights = str(weights)
        self.model = load_into(Net(), weights, Path(PEER_METHODS[name].split()[0]).name)
        self.s3fd = None
        if s3fd_weights:
            from avsync.peers.s3fd import S3FDNet

            self.s3fd = load_into(S3FDNet(), s3fd_weights, "sfd_face.pth")

    def score(self, inp: SyncInput, shifts_frames: np.ndarray) -> np.ndarray:
        raise AvsyncError(f"{self.name} scores whole files (avsync detect, avsync metrics --lse), "
                          "not pre-analysed tracks")

    def detect_file(self, path, *, max_offset_frames: int = 15, max_faces: int = 4,
                    face_backend: str = DEFAULT_BACKEND, on_frame=None):
        from avsync.peers.pipeline import detect_peer

        return detect_peer(path, self.name, self.model, self.s3fd, weights=self.weights,
                           max_offset_frames=max_offset_frames, max_faces=max_faces,
                           face_backend=face_backend, on_frame=on_frame)


def _factory(name: str):
    def make(weights: str | Path | None = None, s3fd_weights: str | Path | None = None) -> PeerMethod:
        return PeerMethod(name, weights, s3fd_weights)

    return make


register_model("syncnet_v2", "peer", "syncnet_python's SyncNet on your syncnet_v2.model "
               "(--weights): offset, LSE-D, LSE-C as in the papers")(_factory("syncnet_v2"))
register_model("wav2lip_expert", "peer", "Wav2Lip's lip-sync expert on your lipsync_expert.pth "
               "(--weights)")(_factory("wav2lip_expert"))
