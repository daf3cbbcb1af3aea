"""The command line on bad (and a few good) inputs.

Every failure must be: a non-zero exit, exactly one non-empty line on stderr per bad input
(MediaPipe/TFLite log lines aside), no traceback, the input untouched and no temp file left.
A few cases run ``python -m avsync.cli`` in a subprocess (realistic: real stdio, C++ logs);
the others use typer's CliRunner in-process (the imports are paid once).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from avsync.cli import app
from avsync.io import write_av
from avsync.models.registry import DEFAULT_METHOD

SR = 16_000
LOG_LINE = re.compile(r"^(W\d{4}|I\d{4}|INFO|WARNING)\b")
RESULT_KEYS = {"path", "offset_frames", "offset_ms", "confidence", "fps", "method", "duration_s",
               "tracks", "curve"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass
class Outcome:
    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None = None


def run_subprocess(*args: str | Path, timeout: float = 180) -> Outcome:
    """``python -m avsync.cli ARGS`` with real pipes."""
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    proc = subprocess.run([sys.executable, "-m", "avsync.cli", *map(str, args)],
                          capture_output=True, text=True, encoding="utf-8", env=env,
                          timeout=timeout)
    return Outcome(proc.returncode, proc.stdout, proc.stderr)


def run_inprocess(*args: str | Path) -> Outcome:
    res = CliRunner().invoke(app, [str(a) for a in args])
    exc = res.exception if not isinstance(res.exception, SystemExit) else None
    return Outcome(res.exit_code, res.stdout, res.stderr, exc)


def error_lines(stderr: str) -> list[str]:
    """Non-empty stderr lines that are not MediaPipe / TFLite logging."""
    return [ln for ln in stderr.splitlines() if ln.strip() and not LOG_LINE.match(ln)]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.avsync-tmp*"))


def assert_clean_failure(out: Outcome, n_inputs: int = 1) -> list[str]:
    assert out.exception is None, f"uncaught {out.exception!r}"
    assert out.exit_code != 0
    assert "Traceback" not in out.stdout + out.stderr
    lines = error_lines(out.stderr)
    assert len(lines) == n_inputs, lines
    return lines


def _speechy(seconds: float, seed: int = 0) -> np.ndarray:
    """Noise gated on and off at syllable rate: speech-like energy changes, never silent."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    gate = np.repeat(rng.random(int(np.ceil(seconds * 5))) > 0.4, SR // 5)[:n]
    x = rng.standard_normal(n) * (0.05 + 0.3 * gate)
    return np.clip(x, -1, 1).astype(np.float32)


# ----------------------------------------------------------------------------- inputs


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory: pytest.TempPathFactory, example_clip: Path,
               example_frames: np.ndarray) -> dict[str, Path]:
    """Each bad input alone in its own folder (so leftovers can be checked per case)."""
    root = tmp_path_factory.mktemp("bad")
    files: dict[str, Path] = {}

    def slot(name: str, filename: str) -> Path:
        d = root / name
        d.mkdir()
        files[name] = d / filename
        return files[name]

    slot("not_media", "notes.mp4").write_text("this is a text file, not a video\n" * 50)
    slot("zero_bytes", "empty.mp4").write_bytes(b"")
    frames = example_frames[:25]
    valid_mp4 = example_clip
    if example_clip.suffix != ".mp4":  # fallback clip: make a valid mp4 of it first
        valid_mp4 = write_av(root / "valid.mp4", example_frames, 25, _speechy(3.0))
    data = valid_mp4.read_bytes()
    slot("truncated", "truncated.mp4").write_bytes(data[: int(0.3 * len(data))])
    write_av(slot("no_audio", "video_only.mp4"), frames, 25, None)
    write_av(slot("no_video_m4a", "audio_only.m4a"), None, None, _speechy(1.0))
    write_av(slot("no_video_wav", "audio_only.wav"), None, None, _speechy(1.0))
    write_av(slot("silent", "silent.mp4"), frames, 25, np.zeros(SR, np.float32))
    noise = np.random.default_rng(0).integers(0, 256, (25, 96, 128, 3), dtype=np.uint8)
    write_av(slot("no_face", "noise.mp4"), noise, 25, _speechy(1.0))
    write_av(slot("one_frame", "one_frame.mp4"), example_frames[:1], 25, _speechy(0.04, seed=3))
    return files


# case -> words of which the error line must contain one
IN_PROCESS_CASES = {
    "zero_bytes": ("empty", "0 bytes"),
    "truncated": ("not a media file", "truncated", "damaged"),
    "no_audio": ("no audio",),
    "no_video_m4a": ("no video",),
    "no_video_wav": ("no video",),
    "silent": ("silent",),
    "one_frame": ("1 frame",),
}


@pytest.mark.parametrize("case", sorted(IN_PROCESS_CASES))
def test_detect_bad_input_in_process(case: str, bad_inputs: dict[str, Path]) -> None:
    path = bad_inputs[case]
    before = digest(path)
    out = run_inprocess("detect", path)
    (line,) = assert_clean_failure(out)
    assert out.exit_code == 1
    assert out.stdout.strip() == ""
    assert path.name in line
    assert any(word in line.lower() for word in IN_PROCESS_CASES[case]), line
    assert digest(path) == before
    assert leftovers(path.parent) == []
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


@pytest.mark.parametrize("case,needle", [("not_media", "not a media file"),
                                         ("no_face", "no face")])
def test_detect_bad_input_subprocess(case: str, needle: str, bad_inputs: dict[str, Path]) -> None:
    path = bad_inputs[case]
    before = digest(path)
    out = run_subprocess("detect", path)
    (line,) = assert_clean_failure(out)
    assert out.exit_code == 1
    assert out.stdout.strip() == ""
    assert needle in line.lower()
    assert digest(path) == before
    assert leftovers(path.parent) == []


@pytest.mark.parametrize("kind", ["missing", "folder"])
def test_detect_missing_file_or_folder(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "nothing.mp4"
    if kind == "folder":
        path.mkdir()
    out = run_inprocess("detect", path)
    (line,) = assert_clean_failure(out)
    assert ("does not exist" if kind == "missing" else "folder") in line
    assert sorted(tmp_path.iterdir()) == ([path] if kind == "folder" else [])


@pytest.mark.parametrize("case", ["no_audio", "zero_bytes"])
def test_error_line_names_the_file_once(case: str, bad_inputs: dict[str, Path]) -> None:
    path = bad_inputs[case]
    (line,) = assert_clean_failure(run_inprocess("detect", path))
    assert line.count(str(path)) == 1, line


def test_fix_bad_input(bad_inputs: dict[str, Path]) -> None:
    """fix with an unreadable input: one line, no output, nothing left behind."""
    path = bad_inputs["not_media"]
    before = digest(path)
    target = path.parent / "out.mp4"
    out = run_inprocess("fix", path, "-o", target, "--offset-ms", "40")
    assert_clean_failure(out)
    assert not target.exists()
    assert digest(path) == before
    assert leftovers(path.parent) == []


def test_fix_without_offset_on_faceless_video(bad_inputs: dict[str, Path]) -> None:
    path = bad_inputs["no_face"]
    target = path.parent / "out.mp4"
    out = run_inprocess("fix", path, "-o", target)
    (line,) = assert_clean_failure(out)
    assert "no face" in line.lower()
    assert not target.exists()
    assert leftovers(path.parent) == []


# ----------------------------------------------------------------------------- good input


@pytest.fixture
def unicode_copy(tmp_path: Path, example_clip: Path) -> Path:
    dst = tmp_path / f"vidéo 日本{example_clip.suffix}"
    shutil.copy(example_clip, dst)
    return dst


def test_detect_unicode_path_succeeds(unicode_copy: Path) -> None:
    before = digest(unicode_copy)
    out = run_subprocess("detect", unicode_copy)
    assert out.exit_code == 0, out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    assert error_lines(out.stderr) == []
    first = out.stdout.splitlines()[0]
    assert first.startswith(f"{unicode_copy}: ")
    assert "in sync" in first
    assert digest(unicode_copy) == before
    assert leftovers(unicode_copy.parent) == []


def test_detect_json_good_and_bad(tmp_path: Path, example_clip: Path) -> None:
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200)
    out = run_subprocess("detect", "--json", example_clip, bad)
    assert out.exit_code == 1
    assert "Traceback" not in out.stdout + out.stderr
    lines = [ln for ln in out.stdout.splitlines() if ln.strip()]
    assert len(lines) == 2, out.stdout
    good, err = (json.loads(ln) for ln in lines)
    assert RESULT_KEYS <= set(good)
    assert good["path"] == str(example_clip)
    assert good["method"] == DEFAULT_METHOD
    assert abs(good["offset_frames"]) <= 1
    assert good["fps"] == pytest.approx(25.0)
    assert good["offset_ms"] == pytest.approx(1000 * good["offset_frames"] / good["fps"], abs=2.1)
    assert len(good["curve"]["offset_frames"]) == len(good["curve"]["score"]) == 31
    assert good["tracks"] and any(t["speaking"] for t in good["tracks"])
    assert set(err) == {"path", "error"}
    assert err["path"] == str(bad)
    assert isinstance(err["error"], str) and err["error"].strip()
    assert error_lines(out.stderr) == []  # --json: errors go to stdout, stderr stays quiet


def test_detect_plot_writes_png(tmp_path: Path, example_clip: Path) -> None:
    png = tmp_path / "plots" / "out.png"
    png.parent.mkdir()
    out = run_inprocess("detect", "--plot", png, example_clip)
    assert out.exception is None
    assert out.exit_code == 0, out.stderr
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert png.stat().st_size > 1000
    assert leftovers(png.parent) == []


def test_detect_plot_refuses_several_inputs(tmp_path: Path, example_clip: Path) -> None:
    png = tmp_path / "out.png"
    out = run_inprocess("detect", "--plot", png, example_clip, example_clip)
    assert_clean_failure(out)
    assert not png.exists()


def test_models_lists_methods() -> None:
    out = run_subprocess("models")
    assert out.exit_code == 0
    names = [ln.split()[0] for ln in out.stdout.splitlines() if ln.strip()]
    assert {"avcorr", "qmi", "fused", DEFAULT_METHOD} <= set(names)
    default = next(ln for ln in out.stdout.splitlines() if ln.split()[:1] == [DEFAULT_METHOD])
    assert "(default)" in default


def test_models_marks_default_once() -> None:
    out = run_inprocess("models")
    assert out.stdout.count("(default)") == 1
    default = next(ln for ln in out.stdout.splitlines() if ln.split()[:1] == [DEFAULT_METHOD])
    assert "(default)" in default


def test_unknown_method_is_one_line(example_clip: Path) -> None:
    out = run_inprocess("detect", "--method", "nope", example_clip)
    (line,) = assert_clean_failure(out)
    assert "unknown method" in line


# ----------------------------------------------------------------------------- fix outputs


def test_fix_refuses_output_equal_to_input(unicode_copy: Path) -> None:
    before = digest(unicode_copy)
    out = run_inprocess("fix", unicode_copy, "-o", unicode_copy, "--offset-ms", "40")
    (line,) = assert_clean_failure(out)
    assert "input" in line.lower()
    assert digest(unicode_copy) == before
    assert leftovers(unicode_copy.parent) == []


def test_fix_refuses_output_equal_to_input_via_other_spelling(unicode_copy: Path) -> None:
    before = digest(unicode_copy)
    other = unicode_copy.parent / "." / unicode_copy.name
    out = run_inprocess("fix", unicode_copy, "-o", other, "--offset-ms", "40", "--overwrite")
    assert_clean_failure(out)
    assert digest(unicode_copy) == before


def test_fix_into_missing_folder(unicode_copy: Path) -> None:
    target = unicode_copy.parent / "missing" / "out.mp4"
    out = run_inprocess("fix", unicode_copy, "-o", target, "--offset-ms", "40")
    (line,) = assert_clean_failure(out)
    assert "does not exist" in line
    assert not target.parent.exists()
    assert leftovers(unicode_copy.parent) == []


def test_fix_refuses_existing_output(unicode_copy: Path) -> None:
    target = unicode_copy.parent / "existing.mp4"
    target.write_bytes(b"precious")
    before_in = digest(unicode_copy)
    out = run_inprocess("fix", unicode_copy, "-o", target, "--offset-ms", "40")
    (line,) = assert_clean_failure(out)
    assert "--overwrite" in line
    assert target.read_bytes() == b"precious"
    assert digest(unicode_copy) == before_in
    assert leftovers(unicode_copy.parent) == []


def test_fix_with_offset_writes_output(unicode_copy: Path) -> None:
    before = digest(unicode_copy)
    target = unicode_copy.parent / "sortie é.mp4"
    out = run_inprocess("fix", unicode_copy, "-o", target, "--offset-ms", "40")
    assert out.exit_code == 0, out.stderr
    assert "earlier" in out.stdout
    assert target.stat().st_size > 1000
    assert digest(unicode_copy) == before
    assert leftovers(unicode_copy.parent) == []
    # --overwrite replaces it
    out = run_inprocess("fix", unicode_copy, "-o", target, "--offset-ms", "-40", "--overwrite")
    assert out.exit_code == 0, out.stderr
    assert "later" in out.stdout


# ----------------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_mouth_only_crop(realclip) -> None:
    """A 96x96 mouth ROI with no full face: either a result (0) or one clean error line (1).

    Observed: exit 1, 'no face stays in view for 12 frames or more'.
    """
    path = realclip("usr/muxed/example_avi+wav.mkv")
    out = run_inprocess("detect", path)
    assert out.exception is None
    assert "Traceback" not in out.stdout + out.stderr
    if out.exit_code == 0:
        assert out.stdout.startswith(f"{path}: ")
        assert error_lines(out.stderr) == []
    else:
        assert out.exit_code == 1
        assert len(error_lines(out.stderr)) == 1
        assert out.stdout.strip() == ""


@pytest.mark.realdata
def test_fix_refuses_low_confidence_detection(realclip, example_frames, tmp_path: Path) -> None:
    """Lips of one speaker with another speaker's voice: `fix` must not apply a guess."""
    from avsync.io import load_audio, write_av

    other = load_audio(realclip("PC-AVS/misc/Audio_Source/00015.mp4")).samples
    n = int(len(example_frames) / 25 * 16000)
    dubbed = write_av(tmp_path / "dubbed.mp4", example_frames, 25, other[:n], 16000)
    out = tmp_path / "out.mp4"
    res = run_inprocess("fix", str(dubbed), "-o", str(out))
    assert res.exit_code == 1
    assert "low confidence" in res.stderr
    assert not out.exists()
    forced = run_inprocess("fix", str(dubbed), "-o", str(out), "--force")
    assert forced.exit_code == 0 and out.is_file()


def test_the_command_ends_quickly_but_cleanly(tmp_path: Path) -> None:
    """``avsync.cli.main`` ends the process with ``os._exit`` after the command (no interpreter
    teardown): the exit code, the flushed output and the exit handlers are as before."""
    code = ("import atexit, sys\nfrom avsync.cli import main\n"
            "atexit.register(lambda: print('exit handler ran', flush=True))\n"
            "sys.argv = ['avsync', *sys.argv[1:]]\nmain()\n")
    ok = subprocess.run([sys.executable, "-c", code, "models"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0
    assert "stacked" in ok.stdout and ok.stdout.rstrip().endswith("exit handler ran")
    bad = subprocess.run([sys.executable, "-c", code, "detect", str(tmp_path / "missing.mp4")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1
    assert "does not exist" in bad.stderr and "Traceback" not in bad.stderr
    usage = subprocess.run([sys.executable, "-c", code, "detect", "--no-such-option"],
                           capture_output=True, text=True, timeout=120)
    assert usage.returncode == 2  # click's usage error, passed through
