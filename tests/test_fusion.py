"""Late fusion of methods (avsync.models.fusion): standardised curves summed."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_registry import SHIFTS, make_input

from avsync.models import create_model
from avsync.models.fusion import FusedMethod, FusionConfig, standardise
from avsync.models.registry import needs_neural


@given(st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=40), st.floats(0.1, 100), st.floats(-50, 50))
def test_standardise_is_affine_invariant(xs, scale, offset):
    x = np.array(xs)
    z = standardise(x)
    assert np.isfinite(z).all()
    if x.std() > 1e-6 * max(1.0, np.abs(x).max()):
        assert z.mean() == pytest.approx(0, abs=1e-6) and z.std() == pytest.approx(1, abs=1e-6)
        np.testing.assert_allclose(standardise(scale * x + offset), z, atol=1e-5)
        assert z[np.argmax(x)] == pytest.approx(z.max())  # the best shift stays the best


def test_standardise_flat_and_nan():
    assert (standardise(np.ones(5)) == 0).all()
    z = standardise(np.array([1.0, np.nan, 3.0]))
    assert np.isnan(z[1]) and z[0] < 0 < z[2]
    assert np.isnan(standardise(np.full(4, np.nan))).all()


def test_fused_default_members_and_neural_need():
    m = create_model("fused")
    assert m.name == "fused" and m.config.members == ("avcorr", "landmark")
    assert needs_neural(m)  # the landmark member reads lip landmarks
    with pytest.raises(ValueError):
        FusionConfig(members=("avcorr",), weights=(1.0,))


@pytest.mark.parametrize("k0", [4, -6])
def test_fusion_of_classical_methods_recovers_planted_shift(k0):
    m = FusedMethod(FusionConfig(members=("avcorr", "qmi"), weights=(1.0, 1.0)))
    assert not needs_neural(m)
    s = m.score(make_input(k0), SHIFTS)
    assert s.shape == (31,) and np.isfinite(s).all()
    assert abs(int(SHIFTS[int(np.argmax(s))]) - k0) <= 1


class _Fixed:
    def __init__(self, curve):
        self.curve, self.name = np.asarray(curve, float), "fixed"

    def score(self, inp, shifts):
        return self.curve


def test_fusion_weights_and_missing_member():
    m = FusedMethod(FusionConfig(members=("avcorr", "qmi"), weights=(1.0, 3.0)))
    a, b = np.zeros(31), np.zeros(31)
    a[5], b[20] = 1.0, 1.0
    m._members = [_Fixed(a), _Fixed(b)]
    assert int(np.argmax(m.score(None, SHIFTS))) == 20  # the heavier member wins
    m._members = [_Fixed(a), _Fixed(np.full(31, np.nan))]  # a member that could not score
    assert int(np.argmax(m.score(None, SHIFTS))) == 5
    m._members = [_Fixed(np.full(31, np.nan))] * 2
    assert np.isnan(m.score(None, SHIFTS)).all()


def test_fusion_min_frames_is_its_most_lenient_member():
    m = FusedMethod(FusionConfig(members=("avcorr", "qmi"), weights=(1.0, 1.0)))
    long_member = _Fixed(np.zeros(31))
    long_member.min_frames = 11
    m._members = [m._members[0], long_member]
    assert m.min_frames == 1  # the classical member scores any input; the other then adds nothing
    m._members = [long_member, long_member]
    assert m.min_frames == 11


def test_stacked_fusion_reads_its_weights_file(tmp_path):
    from avsync.errors import AvsyncError
    from avsync.models.fusion import fusion_from_file, stacked_weights_path

    shipped = create_model("stacked")
    import json

    data = json.loads(stacked_weights_path().read_text())
    assert list(shipped.config.members) == data["members"]
    assert list(shipped.config.weights) == data["weights"]
    f = tmp_path / "w.json"
    f.write_text(json.dumps({"members": ["avcorr", "qmi"], "weights": [2.0, 0.5]}))
    m = fusion_from_file(f)
    assert m.config.weights == (2.0, 0.5) and m.name == "w"
    f.write_text("{}")
    with pytest.raises(AvsyncError):
        fusion_from_file(f)


class _Slow(_Fixed):
    """A member that records which thread scored it and waits a little (so threads overlap)."""

    def score(self, inp, shifts):
        import threading
        import time

        self.threads = getattr(self, "threads", set()) | {threading.get_ident()}
        time.sleep(0.01)
        return self.curve


def test_members_in_parallel_gives_the_same_curve_on_other_threads():
    import threading

    m = FusedMethod(FusionConfig(members=("avcorr", "qmi"), weights=(1.0, 0.5)))
    inp = make_input(3)
    alone = m.score(inp, SHIFTS)
    with m.members_in_parallel(2):
        side_by_side = m.score(inp, SHIFTS)
        assert m._pool is not None
    assert m._pool is None
    np.testing.assert_array_equal(side_by_side, alone)
    rng = np.random.default_rng(0)
    m._members = [_Slow(rng.normal(size=31)) for _ in range(2)]
    m._seconds = [0.0, 0.0]
    want = m.score(None, SHIFTS)
    with m.members_in_parallel(2):
        got = m.score(None, SHIFTS)
    np.testing.assert_array_equal(got, want)
    main = threading.get_ident()
    assert all(len(x.threads - {main}) == 1 for x in m._members)  # each also ran off this thread
    assert len({t for x in m._members for t in x.threads - {main}}) >= 2  # on several threads
    assert all(s > 0 for s in m._seconds)  # its costs order the next calls


def test_score_requests_equal_scoring_each_input_and_run_members_apart():
    """segments.score_requests on a fusion: every row (the input, then each displacement) is the
    fused curve ``score`` gives that input, in turn or with the members on their own threads;
    before any member has run, the pair model (the most work) is started first."""
    from avsync.segments import CurveRequest, score_requests

    m = FusedMethod(FusionConfig(members=("avcorr", "qmi"), weights=(1.0, 0.5)))
    reqs = [CurveRequest(make_input(3), np.array([40, 90])), CurveRequest(make_input(-2, 1), np.array([60]))]
    want = [np.array([m.score(r.inp, SHIFTS)] + [m.score(r.inp.rolled(int(d)), SHIFTS) for d in r.rolls])
            for r in reqs]
    for parallel in (False, True):
        m = FusedMethod(FusionConfig(members=("avcorr", "qmi"), weights=(1.0, 0.5)))
        if parallel:
            with m.members_in_parallel(2):
                got = score_requests(m, reqs, SHIFTS)
        else:
            got = score_requests(m, reqs, SHIFTS)
        assert [g.shape for g in got] == [(3, len(SHIFTS)), (2, len(SHIFTS))]
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=0, atol=1e-12)
    m = FusedMethod(FusionConfig(members=("avcorr", "landmark", "c3"), weights=(1.0, 1.0, 1.0)))
    assert m._longest_first() == [2, 1, 0]
    m._seconds = [5.0, 0.0, 1.0]
    assert m._longest_first() == [0, 2, 1]


def test_default_fusion_side_by_side_matches_in_turn_on_a_real_clip(realclip, one_thread, monkeypatch):
    """The shipped default on a real clip's track, members in turn vs side by side (the trained
    member handing its drift windows to a warm copy of itself): the same curve, confidence and
    drift points to float rounding; the copy really scored on another thread."""
    from avsync.inference import analyse_audio, analyse_video, probe, synchronise
    from avsync.models.registry import DEFAULT_METHOD

    path = realclip("lip-reading-deeplearning/data/sample_video.mp4")
    analysis, audio, fps = analyse_video(path, keep_crops=True), analyse_audio(path), probe(path).fps
    from avsync.cpu import THREADS_ENV

    monkeypatch.setenv(THREADS_ENV, "1")  # synchronise scores the members in turn
    turn_tracks, turn = synchronise(analysis, audio, fps, create_model(DEFAULT_METHOD))
    monkeypatch.delenv(THREADS_ENV)
    m = create_model(DEFAULT_METHOD)
    copies = []
    heavy = m._longest_first()[0]
    original = type(m.members[heavy]).warm_copy

    def spy(self):
        copies.append(original(self))
        return copies[-1]

    type(m.members[heavy]).warm_copy = spy
    try:
        with m.members_in_parallel(2):
            side_tracks, side = synchronise(analysis, audio, fps, m)
    finally:
        type(m.members[heavy]).warm_copy = original
    assert copies and len(copies[0]._out_cache) > 0  # started warm, and scored
    np.testing.assert_allclose(side.scores, turn.scores, rtol=0, atol=1e-9)
    assert abs(side.confidence - turn.confidence) < 1e-6
    for a, b in zip(side_tracks, turn_tracks, strict=True):
        assert len(a.drift) == len(b.drift) >= 2
        for p, q in zip(a.drift, b.drift, strict=True):  # rounded to 0.1 frame / 0.001
            assert p.offset_frames == q.offset_frames and abs(p.confidence - q.confidence) <= 0.0011
