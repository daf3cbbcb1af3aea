"""Ports of the published sync models that papers report with, run on the user's own weights.

- ``syncnet_v2``: syncnet_python's SyncNet (``syncnet_v2.model``): offset, LSE-D, LSE-C exactly as
  syncnet_python / Wav2Lip's ``scores_LSE`` compute them (:mod:`avsync.peers.evaluate`).
- ``wav2lip_expert``: Wav2Lip's lip-sync expert (``lipsync_expert.pth``).
- S3FD (``sfd_face.pth``), optional: the face detector syncnet_python crops with.

Nothing is shipped or downloaded: every weights file is the user's (``--weights``,
``--s3fd-weights``). The networks are rebuilt from the public (MIT) architectures
(:mod:`avsync.peers.nets`, :mod:`avsync.peers.s3fd`) and tested for parity with the reference code
under random weights (tests/test_peers_parity.py).
"""

PEER_METHODS: dict[str, str] = {
    "syncnet_v2": "syncnet_v2.model (syncnet_python's download_model.sh)",
    "wav2lip_expert": "lipsync_expert.pth (Wav2Lip's lip-sync expert)",
}
"""Method name -> the weights file it needs."""
