"""The ``mesh`` face backend (face.mesh): MediaPipe's models run directly, tracking each face."""

from __future__ import annotations

import math

import numpy as np
import pytest

from avsync.face import mesh

pytest.importorskip("ai_edge_litert")

LIPS = [61, 291, 0, 17, 13, 14, 78, 308]


def test_anchors_cover_the_detector_input():
    a = mesh.ssd_anchors()
    assert a.shape == (896, 2)
    assert a.min() > 0 and a.max() < 1
    assert np.allclose(a[0], [1 / 32, 1 / 32]) and np.allclose(a[512], [1 / 16, 1 / 16])


def test_decode_merges_overlapping_detections_and_drops_weak_ones():
    anchors = mesh.ssd_anchors()
    raw = np.zeros((896, 16), np.float32)
    raw[:, 2:4] = 32.0  # boxes a quarter of the input wide
    logits = np.full(896, -10.0, np.float32)
    i = 512 + 6 * (3 * 8 + 4)  # an 8 x 8 cell: centre (4.5 / 8, 3.5 / 8)
    logits[i], logits[i + 1] = 5.0, 3.0  # two anchors of one cell: one face
    raw[i + 1, 0] = 4.0  # the weaker one 4 input pixels to the right
    faces = mesh.decode_detections(raw, logits, anchors, 0.5)
    assert len(faces) == 1
    box, kps, score = faces[0]
    w = 1 / (1 + math.exp(-5.0)), 1 / (1 + math.exp(-3.0))
    cx = 4.5 / 8 + (4.0 / 128) * w[1] / sum(w)  # score-weighted mean of the two
    assert score == pytest.approx(w[0])
    assert (box[0] + box[2]) / 2 == pytest.approx(cx, abs=1e-6)
    assert box[2] - box[0] == pytest.approx(0.25, abs=1e-6)
    assert kps.shape == (6, 2)
    assert mesh.decode_detections(raw, logits, anchors, 0.999) == []


def test_roi_levels_the_eyes_and_the_crop_matches_its_square():
    xy = np.zeros((478, 2), np.float32)
    xy[:, 0] = np.linspace(100, 160, 478)
    xy[:, 1] = np.linspace(50, 90, 478)
    xy[33], xy[263] = (110, 70), (150, 70)
    roi = mesh.roi_from_landmarks(xy)
    assert (roi.center_x, roi.center_y, roi.side, roi.angle) == pytest.approx((130, 70, 90, 0))
    xy[263] = (150, 110)  # right eye 45 degrees lower: the crop turns by +45 degrees
    assert mesh.roi_from_landmarks(xy).angle == pytest.approx(math.pi / 4)
    m = mesh.crop_matrix(mesh.Roi(100.0, 60.0, 64.0, 0.0), 256)
    # the crop's outer pixel edges land on the square's edges (OpenCV centres: -0.5 offsets)
    assert m @ np.array([-0.5, -0.5, 1.0]) == pytest.approx([100 - 32 - 0.5, 60 - 32 - 0.5])
    assert m @ np.array([255.5, 255.5, 1.0]) == pytest.approx([100 + 32 - 0.5, 60 + 32 - 0.5])


@pytest.fixture(scope="module")
def both(example_frames):
    from avsync.face.landmarks import MediaPipeLandmarker

    frames = [np.ascontiguousarray(f) for f in example_frames[:30]]
    with MediaPipeLandmarker(max_faces=4) as mp, mesh.MeshTracker(max_faces=4) as tracker:
        ref = [mp.detect(f, i / 25) for i, f in enumerate(frames)]
        got = [tracker.detect(f, i / 25) for i, f in enumerate(frames)]
        # MediaPipe's blendshapes, recomputed by this backend from MediaPipe's own landmarks
        again = [tracker.blendshapes(r[0].landmarks) for r in ref if r]
    return frames, ref, got, again


def test_mesh_tracks_the_face_mediapipe_finds(both):
    frames, ref, got, _ = both
    assert all(len(g) == 1 for g in got)
    errors = []
    for r, g in zip(ref, got, strict=True):
        if r:
            a, b = r[0].landmarks, g[0].landmarks
            iod = np.linalg.norm(a[33] - a[263])
            errors.append(np.linalg.norm(a[LIPS] - b[LIPS], axis=1).mean() / iod)
    # the same model on a slightly different box: close, not identical (module doc)
    assert len(errors) >= 25 and np.median(errors) < 0.1
    assert got[0][0].box == pytest.approx(ref[0][0].box, abs=0.1 * frames[0].shape[1])


def test_blendshapes_are_mediapipes_on_the_same_landmarks(both):
    _, ref, _, again = both
    want = [r[0].blendshapes for r in ref if r]
    assert len(want) >= 25
    np.testing.assert_allclose(np.array(again), np.array(want), atol=1e-4)


def test_a_face_lost_is_found_again_at_once(example_frames):
    from avsync.face.landmarks import create_landmarker

    face = np.ascontiguousarray(example_frames[0])
    tracker = create_landmarker("mesh", max_faces=2)
    # the detector found it, the tracker follows it, a blank frame loses it, and the next
    # frame runs the detector again (not DETECT_EVERY_FRAMES later)
    assert [len(tracker.detect(f, t)) for t, f in enumerate([face, face, np.zeros_like(face), face])] \
        == [1, 1, 0, 1]
    tracker.close()


def test_seam_resets_restart_a_tracker_at_each_seam_once():
    from avsync.face.chunks import SeamResets, with_seam_resets

    class Tracker:
        resets, seen = 0, []

        def detect(self, image, time_s):
            self.seen.append(time_s)
            return []

        def reset(self):
            self.resets += 1

        def close(self):
            pass

    inner = Tracker()
    lm = SeamResets(inner, [2.0, 1.0])
    for t in (0.0, 0.96, 1.0, 1.04, 2.5, 3.0):
        lm.detect(None, t)
        assert inner.resets == (0 if t < 1 else 1 if t < 2 else 2)
    assert inner.seen == [0.0, 0.96, 1.0, 1.04, 2.5, 3.0]
    plain = SeamResets(type("Graph", (), {"detect": lambda self, im, t: [1]})(), [0.5])
    assert plain.detect(None, 1.0) == [1]  # a backend that cannot reset passes through
    make = lambda: inner  # noqa: E731
    assert with_seam_resets(make, []) is make


def test_mesh_reset_forgets_the_tracked_faces(example_frames):
    face = np.ascontiguousarray(example_frames[0])
    with mesh.MeshTracker(max_faces=1) as tracker:
        first = tracker.detect(face, 0.0)[0].landmarks
        tracker.detect(face, 0.04)
        tracker.reset()
        assert tracker._tracked == []
        # from the detector again: the first frame's answer, exactly
        np.testing.assert_array_equal(tracker.detect(face, 0.08)[0].landmarks, first)
