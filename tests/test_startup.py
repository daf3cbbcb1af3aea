"""What ``detect`` imports: the heavy modules only where a method needs them (start-up time).

``scipy.signal`` (~0.5 s, models.bandpass replaces it) is imported by no method's ``detect``;
torch (~0.75 s) only by the neural methods (the default among them): the audio features use
numpy's FFT and ``models.threads`` imports torch lazily.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

CHILD = """
import json, resource, sys
from avsync.forked import fork_wanted
from avsync.inference import detect
wanted = fork_wanted()
r = detect(sys.argv[1], method=sys.argv[2])
kids = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"torch": "torch" in sys.modules,
                  "scipy_signal": any(m.startswith("scipy.signal") for m in sys.modules),
                  "offset": r.offset_frames, "fork_wanted": wanted,
                  "child_cpu": kids.ru_utime + kids.ru_stime > 0}))
"""


def _imports(clip: Path, method: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(clip), method], capture_output=True,
                         text=True, check=True, timeout=600)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_avcorr_detect_imports_neither_torch_nor_scipy_signal(example_clip: Path) -> None:
    got = _imports(example_clip, "avcorr")
    assert got == {"torch": False, "scipy_signal": False, "offset": got["offset"],
                   "fork_wanted": got["fork_wanted"], "child_cpu": False}  # no model to overlap: no fork


@pytest.mark.slow
def test_default_detect_does_not_import_scipy_signal(example_clip: Path) -> None:
    from avsync.inference import DEFAULT_METHOD

    got = _imports(example_clip, DEFAULT_METHOD)
    assert got["torch"] is True  # the default is a neural fusion: it needs torch
    assert got["scipy_signal"] is False
    # a process's first detect with a trained method: the face analysis ran in a forked child
    # (avsync.forked) wherever forking is wanted (Linux, two or more threads)
    assert got["child_cpu"] is got["fork_wanted"]


def test_a_bad_file_fails_before_the_model_is_built(tmp_path: Path) -> None:
    """The file is probed before the default (a neural fusion) is built: the one-line error
    comes without importing torch (~0.75 s); a bad method name still fails first."""
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    code = ("import sys\nfrom avsync.errors import AvsyncError\nfrom avsync.inference import detect\n"
            "for method in ('stacked', 'nope'):\n"
            "    try:\n        detect(sys.argv[1], method=method)\n"
            "    except AvsyncError as exc:\n        print(str(exc).splitlines()[0])\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(bad)], capture_output=True, text=True,
                         check=True, timeout=120).stdout.strip().splitlines()
    assert "not a media file" in out[0]
    assert "unknown method 'nope'" in out[1]
    assert out[2] == "False"
