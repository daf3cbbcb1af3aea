"""Faults while ``avsync fix`` writes: SIGKILL, full disk, read-only folder, concurrent writers.

Each test runs the real CLI in a subprocess on a real clip and checks that OUT is either absent
or one complete file, that failures are one line on stderr, and that the input is untouched.
"""

from __future__ import annotations

import hashlib
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from avsync.io import load_audio, probe
from avsync.io.output import _HOST, TEMP_MARK, clean_stale_temps

LONG_CLIP = "EDTalk/test_data/pose_source2.mp4"  # 60 s real clip: `fix` takes long enough to kill
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}


def _fix_cmd(src: Path, out: Path, offset_ms: float = 40.0, *extra: str) -> list[str]:
    return [sys.executable, "-m", "avsync.cli", "fix", str(src), "-o", str(out), "--offset-ms",
            str(offset_ms), *extra]


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300, **kw)


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _temps(folder: Path) -> list[Path]:
    return sorted(folder.glob(f".*{TEMP_MARK}*"))


def _assert_one_line_error(r: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    return lines[0]


def _same_media(a: Path, b: Path) -> bool:
    """Same duration, frame count and decoded audio samples."""
    pa, pb = probe(a), probe(b)
    if (pa.n_frames, round(pa.duration_s, 3)) != (pb.n_frames, round(pb.duration_s, 3)):
        return False
    return np.array_equal(load_audio(a).samples, load_audio(b).samples)


# ----------------------------------------------------------------------------- SIGKILL


@pytest.fixture
def long_clip(tmp_path: Path, realclips_or_none, example_clip: Path) -> Path:
    """A real clip of about 60 s: the EDTalk one, else the example looped 20 times by ffmpeg."""
    if realclips_or_none is not None and (realclips_or_none / LONG_CLIP).is_file():
        return realclips_or_none / LONG_CLIP
    if shutil.which("ffmpeg") is None:
        pytest.skip(f"neither {LONG_CLIP} nor ffmpeg (to loop the example clip) is available")
    out = tmp_path / "long.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-stream_loop", "19", "-i", str(example_clip),
                    "-c", "copy", str(out)], check=True, timeout=120)
    return out


@pytest.fixture
def realclips_or_none(request) -> Path | None:
    try:
        return request.getfixturevalue("realclips")
    except pytest.skip.Exception:
        return None


def test_sigkill_at_random_points_never_leaves_a_partial_output(tmp_path: Path, long_clip: Path) -> None:
    src = long_clip
    before = _sha(src)
    ref = tmp_path / "ref.mp4"
    t0 = time.monotonic()
    proc = subprocess.Popen(_fix_cmd(src, ref), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t_tmp = None
    while proc.poll() is None:  # measure when the temp file appears and when the run ends
        if t_tmp is None and _temps(tmp_path):
            t_tmp = time.monotonic() - t0
        time.sleep(0.005)
    total_s = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr.read()
    assert t_tmp is not None and total_s > t_tmp
    out = tmp_path / "out" / "fixed.mp4"
    out.parent.mkdir()
    mid_write = 0
    for seed in range(4):
        rng = random.Random(seed)
        p = subprocess.Popen(_fix_cmd(src, out, 40.0, "--overwrite"), env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        start = time.monotonic()
        if seed % 2 == 0:  # anywhere in the run
            time.sleep(rng.uniform(0.0, total_s))
        else:  # while writing: after the temp file appears
            while p.poll() is None and not _temps(out.parent) and time.monotonic() - start < 120:
                time.sleep(0.002)
            time.sleep(rng.uniform(0.0, 0.9 * (total_s - t_tmp)))
        mid_write += p.poll() is None and bool(_temps(out.parent))
        p.send_signal(signal.SIGKILL)
        p.wait()
        if out.exists():  # complete, never partial
            assert _same_media(out, ref), f"seed {seed}: partial output"
    assert mid_write >= 1, "no kill landed while the output was being written"
    stale = _temps(out.parent)
    assert stale, "the killed runs left no temp file: the test did not exercise the cleanup"
    r = _run(_fix_cmd(src, out, 40.0, "--overwrite"))
    assert r.returncode == 0, r.stderr
    assert _same_media(out, ref)
    assert _temps(out.parent) == []  # the stale temp files of the dead runs were removed
    assert _sha(src) == before


def test_clean_stale_temps_removes_only_dead_writers(tmp_path: Path) -> None:
    out = tmp_path / "clip.mp4"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    names = {
        "dead": f".clip{TEMP_MARK}-{_HOST}-{dead.pid}-abc123.mp4",
        "alive": f".clip{TEMP_MARK}-{_HOST}-{os.getppid()}-abc123.mp4",
        "self": f".clip{TEMP_MARK}-{_HOST}-{os.getpid()}-abc123.mp4",
        "other_host": f".clip{TEMP_MARK}-otherhost-{dead.pid}-abc123.mp4",
        "other_out": f".clip2{TEMP_MARK}-{_HOST}-{dead.pid}-abc123.mp4",
        "legacy_new": f".clip{TEMP_MARK}.mp4",
    }
    for name in names.values():
        (tmp_path / name).write_bytes(b"x")
    assert clean_stale_temps(out) == [tmp_path / names["dead"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(v for k, v in names.items() if k != "dead")


# ----------------------------------------------------------------------------- full disk


def _small_limit() -> None:  # CPython ignores SIGXFSZ: a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))


def test_file_size_limit_gives_one_line_error(tmp_path: Path, example_clip: Path) -> None:
    before = _sha(example_clip)
    out = tmp_path / "fixed.mp4"
    r = _run(_fix_cmd(example_clip, out), preexec_fn=_small_limit)
    line = _assert_one_line_error(r)
    assert "too large" in line.lower()
    assert not out.exists() and _temps(tmp_path) == []
    assert _sha(example_clip) == before


def _mount(args: list[str]) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@pytest.fixture
def small_tmpfs(tmp_path: Path):
    """A 64 KiB tmpfs (root only; skips when mounting is not allowed here)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if not _mount(["-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)]):
        pytest.skip("cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN)")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False)


def test_full_disk_gives_one_line_error(small_tmpfs: Path, example_clip: Path) -> None:
    before = _sha(example_clip)
    out = small_tmpfs / "fixed.mp4"
    line = _assert_one_line_error(_run(_fix_cmd(example_clip, out)))
    assert "space" in line.lower()
    assert not out.exists() and _temps(small_tmpfs) == []
    assert _sha(example_clip) == before


@pytest.fixture
def read_only_dir(tmp_path: Path):
    """A folder nobody may write to: a read-only bind mount for root, else chmod 0555."""
    d = tmp_path / "ro"
    d.mkdir()
    if os.geteuid() != 0:
        d.chmod(0o555)
        yield d
        d.chmod(0o755)
        return
    if not _mount(["--bind", str(d), str(d)]):
        pytest.skip("running as root and cannot bind-mount read-only here")
    try:
        if not _mount(["-o", "remount,ro,bind", str(d)]):
            pytest.skip("cannot remount read-only here")
        yield d
    finally:
        subprocess.run(["umount", str(d)], check=False)


def test_read_only_destination_gives_one_line_error(read_only_dir: Path, example_clip: Path) -> None:
    before = _sha(example_clip)
    out = read_only_dir / "fixed.mp4"
    line = _assert_one_line_error(_run(_fix_cmd(example_clip, out)))
    assert "not writable" in line
    assert not out.exists() and _temps(read_only_dir) == []
    assert _sha(example_clip) == before


# ----------------------------------------------------------------------------- concurrent runs


@pytest.fixture(scope="module")
def race_refs(tmp_path_factory, example_clip: Path) -> dict[float, Path]:
    """The outputs of the two competing runs, each written alone."""
    folder = tmp_path_factory.mktemp("race_refs")
    refs = {}
    for off in (40.0, -80.0):
        refs[off] = folder / f"ref{off:+.0f}.mp4"
        assert _run(_fix_cmd(example_clip, refs[off], off)).returncode == 0
    return refs


@pytest.mark.parametrize("overwrite", [True, False])
def test_two_concurrent_fixes_leave_one_whole_file(tmp_path: Path, example_clip: Path, race_refs,
                                                   overwrite: bool) -> None:
    expected = {off: load_audio(p).samples for off, p in race_refs.items()}
    assert not np.array_equal(*expected.values())
    out = tmp_path / "race.mp4"
    if overwrite:
        out.write_bytes(b"old output")
    extra = ["--overwrite"] if overwrite else []
    procs = [subprocess.Popen(_fix_cmd(example_clip, out, off, *extra), env=ENV, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for off in expected]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = [rc for rc, _ in results]
    if overwrite:
        assert codes == [0, 0], results
    else:  # exactly one wins; the other says OUT exists
        assert sorted(codes) == [0, 1], results
        loser = next(err for rc, err in results if rc == 1)
        assert "exists" in loser and "Traceback" not in loser
    got = load_audio(out).samples
    winners = [off for off, samples in expected.items() if np.array_equal(got, samples)]
    assert len(winners) == 1, "OUT matches neither run: a mix or a partial file"
    if not overwrite:
        assert codes[list(expected).index(winners[0])] == 0
    assert _same_media(out, race_refs[winners[0]])
    assert _temps(tmp_path) == []
