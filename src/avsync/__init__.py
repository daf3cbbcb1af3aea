"""avsync: measure and correct audio-visual lip-sync offsets.

Sign convention: ``offset_ms > 0`` means the audio is LATE (heard after the lips move).

>>> import avsync
>>> result = avsync.detect("talk.mp4")            # doctest: +SKIP
>>> avsync.fix("talk.mp4", "talk.synced.mp4")     # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from avsync.errors import AvsyncError

if TYPE_CHECKING:
    from avsync.inference import detect
    from avsync.models.registry import available_models, create_model
    from avsync.types import SyncResult

__version__ = "0.1.0"

_LAZY = {"detect": "avsync.inference", "available_models": "avsync.models.registry",
         "create_model": "avsync.models.registry", "SyncResult": "avsync.types"}
"""Imported on first use, so that ``import avsync.train`` / ``avsync.models`` (training on a GPU
machine that has torch but neither PyAV nor MediaPipe) does not load the media stack."""


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'avsync' has no attribute {name!r}")


def fix(in_path: str | Path, out_path: str | Path, offset_ms: float | None = None,
        method: str | None = None, overwrite: bool = False,
        force: bool = False, max_offset_ms: float | None = None,
        rotate: str | int | None = "auto", audio_stream: int | None = None) -> tuple[Path, float]:
    """Write ``out_path`` with the audio moved so it is in sync; returns (path, offset_ms used).

    ``offset_ms`` is the measured offset (audio late when > 0); when None it is detected (with
    ``method``, default the registry's DEFAULT_METHOD), and a detection below the reliability
    threshold is refused unless ``force``; ``max_offset_ms``: the detection's wide search
    (see avsync.search; None = automatic). ``rotate`` (detection only): "auto" or a forced
    clockwise turn of the pictures; the copied video keeps its display matrix either way.
    The input is never modified; the output is written atomically. ``audio_stream``: the audio
    stream measured and shifted (0 = first; None = the default one); only it is written.
    """
    from avsync.inference import detect
    from avsync.io import check_output_path, shift_audio
    from avsync.io.orientation import parse_rotate

    parse_rotate(rotate)
    check_output_path(out_path, overwrite=overwrite, protect=[in_path])
    if offset_ms is None:
        from avsync.models.registry import DEFAULT_METHOD

        result = detect(in_path, method=method or DEFAULT_METHOD, drift=False,
                        max_offset_ms=max_offset_ms, rotate=rotate, audio_stream=audio_stream)
        if not result.reliable and not force:
            raise AvsyncError(
                f"{in_path}: the detected offset ({result.offset_ms:+.0f} ms) has low confidence "
                f"({result.confidence:.1f}); check it with 'avsync detect --plot', then pass "
                "--offset-ms, or --force to apply it anyway")
        offset_ms = result.offset_ms
    return shift_audio(in_path, out_path, offset_ms, overwrite=overwrite,
                       audio_stream_index=audio_stream), float(offset_ms)


def generate(audio_path: str | Path, image_path: str | Path, out_path: str | Path,
             checkpoint: str | Path | None = None, overwrite: bool = False, size: int = 64) -> dict:
    """Write ``out_path``: lips of the image's identity saying the audio (25 fps mp4 with the
    speech); see :func:`avsync.lipgen.generate.generate`. Returns a summary dict."""
    from avsync.lipgen.generate import generate as run

    return run(audio_path, image_path, out_path, checkpoint=checkpoint, overwrite=overwrite, size=size)


__all__ = ["AvsyncError", "SyncResult", "available_models", "create_model", "detect", "fix", "generate"]
