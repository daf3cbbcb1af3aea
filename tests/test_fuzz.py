"""Hostile files: seeded mutations of a real clip in six containers never break the CLI.

The large run (>= 1,000 files) is benchmarks/fuzz.py; here 54 mutated files go through
``avsync detect --json`` / ``fix`` in their own processes and each must end in a result or a
one-line error -- never a traceback, a crash, a hang or a leftover output.
"""

from __future__ import annotations

import random
import signal
from pathlib import Path

import pytest

from avsync.evaluation.fuzz import CONTAINERS, MUTATORS, _fields, make_seeds, mutate_file
from avsync.evaluation.fuzz_run import FAILURES, Case, classify, run_cases

CI_MUTATORS = ("bitflip", "byterun", "header", "index", "dims", "time", "trunc30", "trunc60", "trunc90")


@pytest.fixture(scope="module")
def seeds(tmp_path_factory, example_clip: Path) -> dict[str, Path]:
    got = make_seeds(example_clip, tmp_path_factory.mktemp("seeds"), duration_s=1.2)
    if not got:
        pytest.skip("could not transcode the example clip into seed files")
    return got


def test_seeds_cover_the_containers(seeds: dict[str, Path]) -> None:
    import shutil

    expected = set(CONTAINERS) if shutil.which("ffmpeg") else set(CONTAINERS) - {"webm"}
    assert set(seeds) == expected


def test_mutations_are_seeded_and_change_the_file(seeds: dict[str, Path], tmp_path: Path) -> None:
    for kind, seed_file in seeds.items():
        data = seed_file.read_bytes()
        for name in MUTATORS:
            a = mutate_file(seed_file, name, 3, tmp_path / f"a.{kind}").read_bytes()
            b = mutate_file(seed_file, name, 3, tmp_path / f"b.{kind}").read_bytes()
            assert a == b, f"{kind}/{name} is not reproducible"
            assert a != data, f"{kind}/{name} left the file unchanged"
            if name.startswith("trunc"):
                assert len(a) == len(data) * int(name[5:]) // 100


def test_container_fields_are_found(seeds: dict[str, Path]) -> None:
    """index/dims/time mutators edit known fields of every container (no blind fallback)."""
    for kind, seed_file in seeds.items():
        data = seed_file.read_bytes()
        for what in ("index", "dims", "time"):
            fields = _fields(data, what)
            assert fields, f"no {what} field found in the {kind} seed"
            assert all(0 <= off and off + n <= len(data) for off, n in fields)


def test_classify() -> None:
    det = Case(["detect", "--json", "x.mp4"])
    assert classify(det, 0, '{"path": "x", "offset_ms": 0.0}\n', "")[0] == "result"
    assert classify(det, 1, '{"path": "x", "error": "Cannot read x."}\n', "")[0] == "error"
    assert classify(det, 1, "", "error: unexpected failure (KeyError: 3)\n")[0] == "unexpected"
    assert classify(det, 1, "", "Traceback (most recent call last):\n  ...\nKeyError: 3\n")[0] == "traceback"
    assert classify(det, -signal.SIGSEGV, "", "")[0] == "crash"
    assert classify(det, -signal.SIGXCPU, "", "")[0] == "hang"
    assert classify(det, None, "", "")[0] == "hang"
    assert classify(det, 0, "not json\n", "")[0] == "malformed"
    assert classify(det, 2, "", "error: a\nerror: b\n")[0] == "malformed"


def test_fix_leaving_output_is_a_failure(tmp_path: Path) -> None:
    out = tmp_path / "o.mp4"
    out.write_bytes(b"partial")
    case = Case(["fix", "in.mp4", "-o", str(out)], out=out)
    assert classify(case, 1, "", "error: Cannot read in.mp4.\n")[0] == "leftover"


def test_fuzzed_files_never_break_the_cli(seeds: dict[str, Path], tmp_path: Path) -> None:
    rng = random.Random(12)
    cases = []
    (tmp_path / "out").mkdir()
    for kind, seed_file in sorted(seeds.items()):
        for i, name in enumerate(CI_MUTATORS):
            path = mutate_file(seed_file, name, rng.randrange(10**6), tmp_path / f"{name}.{kind}")
            if i == 0:  # one fix per container
                out = tmp_path / "out" / f"{name}-{kind}.{'mkv' if kind == 'webm' else kind}"
                argv = ["fix", str(path), "-o", str(out), "--offset-ms", "40"]
                cases.append(Case(argv, kind, name, out=out))
            else:
                cases.append(Case(["detect", "--json", "--no-progress", "--method", "avcorr", str(path)],
                                  kind, name))
    assert len(cases) >= 50
    exec_cases = cases[1::9]  # one per container in a fresh interpreter, the rest forked
    fork_cases = [c for c in cases if c not in exec_cases]
    outcomes = run_cases(fork_cases, mode="fork", workers=2) + run_cases(exec_cases, mode="exec", workers=2)
    assert len(outcomes) == len(cases)
    bad = [f"{o.case.container}/{o.case.mutator}: {o.kind}: {o.detail}"
           for o in outcomes if o.kind in FAILURES]
    assert not bad, "\n".join(bad)
    kinds = {o.kind for o in outcomes}
    assert kinds <= {"result", "error"} and "error" in kinds and "result" in kinds


def test_audio_rate_change_mid_stream(tmp_path: Path) -> None:
    """Found by the fuzzer (a byte run in an mpg's mp2 header): the sample rate changes
    mid-stream; decoding and fixing used to fail with 'Frame does not match AudioResampler'."""
    import numpy as np

    from avsync.io import load_audio, shift_audio, write_av

    parts = [write_av(tmp_path / f"{sr}.mpg", None, None, 0.3 * np.sin(np.arange(sr) / 10.0),
                      sample_rate_hz=sr) for sr in (44100, 48000)]
    joined = tmp_path / "joined.mpg"  # MPEG-PS files concatenate into one valid stream
    joined.write_bytes(parts[0].read_bytes() + parts[1].read_bytes())
    track = load_audio(joined)
    assert track.duration_s > 1.9
    out = shift_audio(joined, tmp_path / "fixed.mkv", 40.0)
    assert load_audio(out).duration_s > 1.9


def test_fork_mode_falls_back_to_exec_after_ray(monkeypatch) -> None:
    """Forking a parent that loaded Ray crashed or hung the children (seen in CI)."""
    import sys
    import types

    from avsync.evaluation import fuzz_run

    monkeypatch.delitem(sys.modules, "ray", raising=False)
    monkeypatch.delitem(sys.modules, "grpc", raising=False)
    assert fuzz_run.fork_is_safe()
    monkeypatch.setitem(sys.modules, "ray", types.ModuleType("ray"))
    assert not fuzz_run.fork_is_safe()
