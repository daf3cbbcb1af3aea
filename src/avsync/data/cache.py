"""Training cache: each real clip preprocessed once into one compressed ``.npz``.

Neural sync methods train from these files without decoding any video. One file per clip,
named ``<stem>-<key>.npz`` where the key hashes the clip's resolved path, size, mtime and
CACHE_VERSION; files are written atomically and never rebuilt when present. Contents (T video
frames of the chosen face track, N audio hops of 10 ms):

==================  ==================  =====================================================
key                 shape, dtype        meaning
==================  ==================  =====================================================
``fps``             () float64          nominal frame rate of the video (frames/s)
``frame_times_s``   (T,) float64        container-clock time of each track frame (s)
``mouth``           (T, 48, 48) uint8   grey landmark-aligned mouth crop (mouth = half width)
``lips``            (T, 40, 2) float16  20 inner + 20 outer lip points, centred on the outer
                                        lip, in inter-ocular distances; NaN where not valid
``blend``           (T, 10) float16     mouth blendshapes (BLENDSHAPE_NAMES), gaps interpolated
``signals``         (T, 19) float32     SIGNAL_NAMES, gaps interpolated (Track.signal_matrix)
``valid``           (T,) bool           False for gap frames (face missed, values filled in)
``logmel``          (N, 40) float16     features.log_mel of the 16 kHz mono audio
``audio_start_s``   () float64          container time of logmel row 0; row i is centred at
                                        ``audio_start_s + i * 0.01`` s
``speaker``         () unicode          Clip.speaker
``source``          () unicode          Clip.source
``path``            () unicode          resolved absolute path of the clip (POSIX)
``rgb``             (T, 64, 64, 3) u8   generation cache only (``kind="generation"``): RGB
                                        aligned mouth crop, same framing as ``mouth``
``lips_px``         (T, 40, 2) float16  generation cache only: the lip points in ``rgb``'s
                                        pixels; NaN where not valid
==================  ==================  =====================================================

Track choice: among the tracks of >= MIN_TRACK_FRAMES frames, the longest of those that the
training-free ``avcorr`` (TRACK_METHOD, via inference.synchronise; not the default method, so
that the training data never depends on a trained model) marks as speaking with a confidence of at
least CONFIDENCE_THRESHOLD; when no track is that confident, the longest track (a low-confidence
"speaking" pick is mostly noise, and a broken-up track would waste most of the clip).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from avsync.errors import AvsyncError
from avsync.evaluation.clips import Clip
from avsync.timing import AUDIO_HOP_S

CACHE_VERSION: str = "train-v1"
"""Bump when the contents change: every clip then gets a new file name (old files are ignored)."""

CACHE_KEYS: tuple[str, ...] = ("fps", "frame_times_s", "mouth", "lips", "blend", "signals", "valid",
                               "logmel", "audio_start_s", "speaker", "source", "path")
"""The exact keys of every cache file."""

SKIP_SUFFIX: str = ".skip"
"""A clip that cannot be cached (no face track, silent audio) leaves ``<stem>-<key>.skip``
holding the one-line reason, so that later runs skip it without analysing it again."""


class ClipSkipped(AvsyncError):
    """The clip cannot give training data (no long-enough face track, no audio, ...)."""


def cache_name(path: str | Path, version: str = CACHE_VERSION) -> str:
    """``<stem>-<key>`` for a clip: key = sha1(resolved path | size | mtime | version)[:16]."""
    p = Path(path)
    st = p.stat()
    ident = f"{p.resolve().as_posix()}|{st.st_size}|{int(st.st_mtime)}|{version}"
    stem = "".join(c if c.isalnum() or c in "-_+." else "_" for c in p.stem[:40])
    return f"{stem}-{hashlib.sha1(ident.encode()).hexdigest()[:16]}"


def frame_to_logmel_index(frame_times_s: np.ndarray, audio_start_s: float) -> np.ndarray:
    """Nearest logmel row of each frame time: round((t - audio_start_s) / 0.01), (T,) int64.

    Rows can fall outside [0, N) when video and audio do not cover the same span; clip them
    (or drop those frames) before indexing.
    """
    t = np.asarray(frame_times_s, np.float64)
    return np.rint((t - float(audio_start_s)) / AUDIO_HOP_S).astype(np.int64)


def load_clip_cache(path: str | Path) -> dict:
    """Read one cache file: a dict with CACHE_KEYS; scalars as float / str, the rest as arrays."""
    with np.load(path, allow_pickle=False) as z:
        out = {k: z[k] for k in z.files}
    for k in ("fps", "audio_start_s"):
        out[k] = float(out[k])
    for k in ("speaker", "source", "path"):
        out[k] = str(out[k])
    return out


TRACK_METHOD: str = "avcorr"
"""The method whose speaking-track choice picks the cached track (training-free)."""


def _choose_track(analysis, audio, fps: float):
    """The track to cache (see the module docstring); raises ClipSkipped when none is long."""
    from avsync.inference import CONFIDENCE_THRESHOLD, MIN_TRACK_FRAMES, synchronise
    from avsync.models.registry import create_model

    long_tracks = [t for t in analysis.tracks if t.n_frames >= MIN_TRACK_FRAMES]
    if not long_tracks:
        raise ClipSkipped(f"no face track of {MIN_TRACK_FRAMES} frames or more")
    results, _ = synchronise(analysis, audio, fps, create_model(TRACK_METHOD), drift=False)
    speaking = {r.track_id for r in results if r.speaking and r.confidence >= CONFIDENCE_THRESHOLD}
    candidates = [t for t in long_tracks if t.track_id in speaking] or long_tracks
    return max(candidates, key=lambda t: (t.n_frames, -t.track_id))


def _clip_arrays(clip: Clip, rgb_crop_size: int = 0) -> dict[str, np.ndarray]:
    """Analyse one clip (video + audio) into the arrays of its cache file.

    rgb_crop_size > 0 adds ``rgb`` (T, S, S, 3) uint8 RGB mouth crops and ``lips_px`` (T, 40, 2)
    float16 lip points in crop pixels (the generation cache, read by :mod:`avsync.lipgen.windows`)."""
    from avsync.errors import NoFaceError, SilentAudioError
    from avsync.face.landmarks import BLENDSHAPE_NAMES
    from avsync.face.mouth import SIGNAL_NAMES
    from avsync.features import log_mel
    from avsync.inference import _fps_from_times, analyse_audio, analyse_video
    from avsync.io import load_audio, probe

    info = probe(clip.path)
    if not info.has_video:
        raise ClipSkipped("the file has no video stream")
    if not info.has_audio:
        raise ClipSkipped("the file has no audio stream")
    try:
        audio = analyse_audio(clip.path)
    except SilentAudioError as exc:
        raise ClipSkipped("the audio track is silent") from exc
    analysis = analyse_video(clip.path, keep_crops=True, rgb_crop_size=rgb_crop_size)
    fps = info.fps if info.fps and info.fps > 0 else _fps_from_times(analysis.frame_times_s)
    fps = analysis.rate_fps or fps  # 50/60 fps videos are analysed on a 25 fps grid
    try:
        track = _choose_track(analysis, audio, fps)
    except NoFaceError as exc:
        raise ClipSkipped(str(exc)) from exc
    samples = load_audio(clip.path)  # decoded again: AudioFeatures keeps no samples
    signals = track.signal_matrix()
    b0 = SIGNAL_NAMES.index(BLENDSHAPE_NAMES[0])
    extra = {"rgb": np.stack(track.rgb).astype(np.uint8),
             "lips_px": np.stack(track.lips_px).astype(np.float16)} if rgb_crop_size else {}
    return {**extra,
        "fps": np.float64(fps),
        "frame_times_s": np.asarray(track.time_s, np.float64),
        "mouth": np.stack(track.mouth).astype(np.uint8),
        "lips": np.stack(track.lips).astype(np.float16),
        "blend": signals[:, b0: b0 + len(BLENDSHAPE_NAMES)].astype(np.float16),
        "signals": signals.astype(np.float32),
        "valid": np.asarray(track.valid, bool),
        "logmel": log_mel(samples.samples).astype(np.float16),
        "audio_start_s": np.float64(samples.start_s),
        "speaker": np.array(clip.speaker),
        "source": np.array(clip.source),
        "path": np.array(Path(clip.path).resolve().as_posix()),
    }


KINDS: dict[str, tuple[str, int]] = {"sync": (CACHE_VERSION, 0), "generation": ("gen-v1", 64)}
"""Cache kind -> (version in the file key, RGB crop side): ``sync`` is the training cache of the
sync methods; ``generation`` adds 64x64 RGB mouth crops and their lip points (lip generator)."""


def build_clip_cache(clip: Clip, out_dir: Path, kind: str = "sync") -> Path:
    """Cache one clip in ``out_dir`` (created if missing); returns the ``.npz`` path.

    Returns at once when the file exists. Raises ClipSkipped (with a one-line reason) when the
    clip has no face track of MIN_TRACK_FRAMES frames, no audio or silent audio, and leaves a
    ``.skip`` marker so a later call raises at once too; raises AvsyncError for unreadable media.
    """
    from avsync.io import atomic_output

    out_dir = Path(out_dir)
    if kind not in KINDS:
        raise AvsyncError(f"unknown cache kind {kind!r}; known: {', '.join(KINDS)}")
    version, rgb_size = KINDS[kind]
    name = cache_name(clip.path, version)
    out = out_dir / f"{name}.npz"
    marker = out_dir / f"{name}{SKIP_SUFFIX}"
    if out.is_file():
        return out
    if marker.is_file():
        raise ClipSkipped(marker.read_text(encoding="utf-8").strip() or "skipped before")
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        arrays = _clip_arrays(clip, rgb_size)
    except ClipSkipped as exc:
        with atomic_output(marker, overwrite=True) as tmp:
            tmp.write_text(f"{exc}\n", encoding="utf-8")
        raise
    with atomic_output(out, overwrite=True) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    return out


def _job(clip: Clip, out_dir: Path, kind: str = "sync") -> tuple[Path | None, str]:
    """(cache path, "") or (None, one-line reason); never raises (one bad clip must not stop all)."""
    try:
        return build_clip_cache(clip, out_dir, kind), ""
    except AvsyncError as exc:
        return None, str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    except Exception as exc:  # noqa: BLE001
        return None, f"unexpected failure ({type(exc).__name__}: {exc})".splitlines()[0]


def build_cache(clips: Sequence[Clip], out_dir: Path, workers: int = 1, progress: bool = True,
                on_skip: Callable[[Clip, str], None] | None = None, kind: str = "sync") -> list[Path]:
    """Cache every clip (see :func:`build_clip_cache`); returns the cache files, in clip order.

    Skipped or failing clips are left out, each reported by ``on_skip(clip, reason)``; by
    default as one ``warning: PATH: reason`` line on stderr. ``workers`` > 1 analyses clips in
    that many processes. ``progress`` shows a progress bar on stderr. ``kind``: a KINDS key.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    console = Console(stderr=True)

    def report(clip: Clip, reason: str) -> None:
        if on_skip is not None:
            on_skip(clip, reason)
        else:
            console.print(f"warning: {clip.path}: {reason}", highlight=False, soft_wrap=True,
                          markup=False)

    results: list[tuple[Path | None, str]] = []
    with Progress(TextColumn("caching clips"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, disable=not progress, transient=True) as bar:
        task = bar.add_task("clips", total=len(clips))
        spawn = get_context("spawn")  # fork after torch has started threads can deadlock
        pool = ProcessPoolExecutor(workers, mp_context=spawn) if workers > 1 and len(clips) > 1 else None
        try:
            it = pool.map(_job, clips, [out_dir] * len(clips), [kind] * len(clips)) if pool else (
                _job(c, out_dir, kind) for c in clips)
            for clip, res in zip(clips, it, strict=True):
                results.append(res)
                if res[0] is None:
                    report(clip, res[1])
                bar.advance(task)
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
    return [p for p, _ in results if p is not None]
