"""avsync.forked: work in a forked child beside the caller (detect's face analysis while the
model is built), with the child's answer, progress and errors brought back."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest

from avsync.errors import AvsyncError, MediaError
from avsync.forked import FORK_ENV, Forked, fork_wanted

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or not sys.platform.startswith("linux"),
                                reason="fork-based, Linux only")


def test_the_childs_value_and_progress_come_back() -> None:
    seen: list[int] = []

    def work(progress):
        for n in range(3):
            progress(n)
            time.sleep(0.15)  # longer than PROGRESS_EVERY_S: every call is sent
        return {"pid": os.getpid(), "big": list(range(100_000))}

    with Forked(work, on_progress=seen.append) as job:
        got = job.result()
    assert got["pid"] == job.pid != os.getpid()
    assert got["big"][-1] == 99_999
    assert seen == [0, 1, 2]


def test_fast_progress_is_thinned_but_ends_on_the_last_value() -> None:
    seen: list[int] = []

    def work(progress):
        for n in range(1000):
            progress(n)
        return "done"

    with Forked(work, on_progress=seen.append) as job:
        assert job.result() == "done"
    assert seen[0] == 0 and seen[-1] == 999 and len(seen) < 20  # at most one every 0.1 s, and the end


def test_the_childs_error_is_raised_again_with_its_type_and_message() -> None:
    def work(progress):
        raise MediaError("clip.mp4: no frame decodes")

    with Forked(work) as job, pytest.raises(MediaError, match="no frame decodes"):
        job.result()


def test_an_error_that_cannot_be_rebuilt_becomes_an_avsync_error() -> None:
    class Odd(Exception):
        def __init__(self, a, b):
            super().__init__(f"{a}/{b}")

    def work(progress):
        raise Odd(1, 2)

    with Forked(work) as job, pytest.raises(AvsyncError, match="Odd: 1/2"):
        job.result()


def test_a_child_that_dies_gives_a_one_line_error() -> None:
    def work(progress):
        os.kill(os.getpid(), signal.SIGKILL)

    with Forked(work) as job, pytest.raises(AvsyncError, match="ended without an answer .killed by SIGKILL"):
        job.result()


def test_closing_kills_a_running_child_and_reaps_it() -> None:
    job = Forked(lambda progress: time.sleep(60))
    t0 = time.monotonic()
    job.close()
    assert time.monotonic() - t0 < 10
    with pytest.raises(ChildProcessError):  # reaped: no such child any more
        os.waitpid(job.pid, os.WNOHANG)


def test_a_failing_progress_display_does_not_stop_the_work() -> None:
    def shaky(n: int) -> None:
        raise RuntimeError("display gone")

    def work(progress):
        progress(1)
        return 7

    with Forked(work, on_progress=shaky) as job:
        assert job.result() == 7


def test_when_a_fork_is_wanted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVSYNC_THREADS", "2")
    monkeypatch.delenv(FORK_ENV, raising=False)
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.delitem(sys.modules, "ray", raising=False)
    assert fork_wanted()
    monkeypatch.setenv(FORK_ENV, "0")
    assert not fork_wanted()  # switched off
    monkeypatch.delenv(FORK_ENV)
    monkeypatch.setenv("AVSYNC_THREADS", "1")
    assert not fork_wanted()  # one thread: nothing to overlap
    monkeypatch.setenv("AVSYNC_THREADS", "2")
    monkeypatch.setitem(sys.modules, "torch", object())
    assert not fork_wanted()  # torch's thread pools may exist: never fork them


def test_detect_gives_the_same_answer_with_the_face_analysis_in_a_child(
        example_clip, monkeypatch: pytest.MonkeyPatch) -> None:
    """The face analysis in a forked child (forced here: this process has torch) and in-process."""
    import avsync.forked
    from avsync.inference import detect

    monkeypatch.setenv(FORK_ENV, "0")
    alone = detect(example_clip)
    frames: list[int] = []
    monkeypatch.setattr(avsync.forked, "fork_wanted", lambda: True)
    forked = detect(example_clip, on_frame=frames.append)
    a, b = alone.to_dict(), forked.to_dict()
    a.pop("timings_s"), b.pop("timings_s")
    assert a == b
    assert frames and frames == sorted(frames)  # progress came back from the child


def test_a_parent_side_error_stops_the_child(example_clip, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The model fails to build after the face analysis started: the child is killed and reaped."""
    import avsync.forked
    import avsync.inference as inference

    started: list[Forked] = []

    class Recorded(Forked):
        def __init__(self, *args, **kw):
            super().__init__(*args, **kw)
            started.append(self)

    monkeypatch.setattr(avsync.forked, "fork_wanted", lambda: True)
    monkeypatch.setattr(avsync.forked, "Forked", Recorded)

    def broken(*args, **kw):
        raise AvsyncError("weights unreadable")

    monkeypatch.setattr(inference, "create_model", broken)
    with pytest.raises(AvsyncError, match="weights unreadable"):
        inference.detect(example_clip)
    assert len(started) == 1
    with pytest.raises(ChildProcessError):
        os.waitpid(started[0].pid, os.WNOHANG)
