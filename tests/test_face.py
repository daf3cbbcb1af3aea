"""Face layer: tracking, shot cuts, landmark layouts, backends."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from avsync.errors import AvsyncError
from avsync.face.landmarks import BLENDSHAPE_NAMES, FaceDetection, create_landmarker
from avsync.face.mouth import IBUG_68, MEDIAPIPE_478, SIGNAL_NAMES, geometry_signals, mouth_crop
from avsync.face.tracks import analyse_frames

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "grid_bbaf2n.mp4"


def _face(x0: float, y0: float, size: float = 100.0, n_points: int = 478) -> FaceDetection:
    rng = np.random.default_rng(int(x0 * 7 + y0))
    pts = np.column_stack([x0 + rng.random(n_points) * size, y0 + rng.random(n_points) * size])
    return FaceDetection(pts.astype(np.float32), np.zeros(len(BLENDSHAPE_NAMES), np.float32),
                         (x0, y0, x0 + size, y0 + size))


@dataclass
class _Frame:
    index: int
    time_s: float
    image: np.ndarray


class _ScriptedLandmarker:
    """Returns pre-scripted faces per frame index."""

    def __init__(self, script: dict[int, list[FaceDetection]]) -> None:
        self.script = script
        self.n = 0

    def detect(self, image: np.ndarray, time_s: float) -> list[FaceDetection]:
        faces = self.script.get(self.n, [])
        self.n += 1
        return faces

    def close(self) -> None:
        pass


def _frames(n: int, cut_at: int | None = None) -> list[_Frame]:
    out = []
    for i in range(n):
        colour = (200, 40, 40) if cut_at is not None and i >= cut_at else (40, 40, 200)
        img = np.zeros((240, 320, 3), np.uint8) + np.array(colour, np.uint8)
        out.append(_Frame(i, i / 25, img))
    return out


def test_two_faces_are_two_tracks_with_stable_identity():
    script = {i: [_face(20 + i, 50), _face(200 - i, 60)][:: 1 if i % 2 else -1] for i in range(30)}
    va = analyse_frames(_frames(30), _ScriptedLandmarker(script))
    assert len(va.tracks) == 2
    assert all(t.n_frames == 30 for t in va.tracks)
    left = min(va.tracks, key=lambda t: t.boxes[0][0])
    assert all(b[0] < 100 for b in left.boxes)  # the left face never swaps into the right track


def test_short_gap_is_filled_and_signals_interpolated():
    script = {i: [_face(50, 50)] for i in range(20) if i not in (8, 9, 10)}
    va = analyse_frames(_frames(20), _ScriptedLandmarker(script))
    assert len(va.tracks) == 1
    track = va.tracks[0]
    assert track.frame_index == list(range(20))
    assert np.isfinite(track.signal_matrix()).all()
    assert track.signal_matrix().shape == (20, len(SIGNAL_NAMES))


def test_shot_cut_splits_tracks():
    script = {i: [_face(50, 50)] for i in range(40)}
    va = analyse_frames(_frames(40, cut_at=25), _ScriptedLandmarker(script))
    assert va.cuts == [25]
    assert [t.n_frames for t in va.tracks] == [25, 15]
    assert [t.shot for t in va.tracks] == [0, 1]


def test_geometry_is_scale_free_for_both_layouts():
    for scheme, n in ((MEDIAPIPE_478, 478), (IBUG_68, 68)):
        pts = np.random.default_rng(1).random((n, 2)).astype(np.float32) * 100
        a = geometry_signals(pts)
        b = geometry_signals(pts * 3.0 + 17.0)
        np.testing.assert_allclose(a, b, rtol=1e-4, err_msg=scheme.name)


def test_mouth_crop_shape():
    img = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    crop = mouth_crop(img, _face(100, 80).landmarks)
    assert crop.shape == (40, 64) and crop.dtype == np.uint8


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(AvsyncError, match="unknown face backend"):
        create_landmarker("nope")


@pytest.mark.parametrize("backend", ["mediapipe", "dlib"])
def test_backend_finds_the_example_face(backend):
    if not EXAMPLE.exists():
        pytest.skip("example clip missing")
    try:
        lm = create_landmarker(backend, max_faces=2)
    except AvsyncError as exc:
        pytest.skip(f"{backend} not installed: {exc}")
    from avsync.io import iter_video_frames

    try:
        frames = [f for f, _ in zip(iter_video_frames(EXAMPLE), range(5), strict=False)]
        faces = [lm.detect(f.image, f.time_s) for f in frames]
    finally:
        lm.close()
    assert all(len(f) == 1 for f in faces)
    box = faces[0][0].box
    assert 60 < box[0] < 300 and box[2] - box[0] > 40  # a face of plausible size in the frame
