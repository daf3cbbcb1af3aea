"""End-to-end known answers: shift real clips with ``avsync.fix`` and detect the shift back.

``avsync.fix(src, out, offset_ms=-k * 1000 / fps)`` moves the audio k frames LATER, so the
audio of ``out`` is late by k frames and ``avsync.detect(out).offset_frames`` must be +k
(for clips whose own offset k0 is not 0: k0 + k).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import avsync
import avsync.inference as inference
from avsync.features import shift_samples
from avsync.io import iter_video_frames, load_audio, probe, write_av
from avsync.timing import frames_to_ms

SHIFTS = (-6, 0, 4)
TOL = 1  # frames


def shifted_copy(src: Path, folder: Path, k: int) -> Path:
    """A copy of ``src`` whose audio is k frames later (late by k frames when src is in sync)."""
    fps = probe(src).fps
    suffix = src.suffix if src.suffix in (".mp4", ".mkv", ".mpg", ".mov") else ".mkv"
    out = folder / f"{src.stem}_shift{k:+d}{suffix}"
    if not out.exists():
        written, used = avsync.fix(src, out, offset_ms=-frames_to_ms(k, fps))
        assert written == out and used == pytest.approx(-frames_to_ms(k, fps))
    return out


# ----------------------------------------------------------------------------- example clip


@pytest.fixture(scope="module")
def shifted_examples(tmp_path_factory: pytest.TempPathFactory, example_clip: Path
                     ) -> dict[int, Path]:
    folder = tmp_path_factory.mktemp("shifted")
    return {k: shifted_copy(example_clip, folder, k) for k in SHIFTS}


def test_example_clip_is_in_sync(example_clip: Path) -> None:
    r = avsync.detect(example_clip, drift=False)
    assert abs(r.offset_frames) <= TOL
    assert r.in_sync
    assert r.fps == pytest.approx(25.0)
    assert r.duration_s == pytest.approx(3.0, abs=0.1)
    assert len(r.tracks) == 1 and r.tracks[0].speaking
    assert r.offset_ms == pytest.approx(frames_to_ms(r.offset_frames, r.fps), abs=2.1)  # 0.05 fr


@pytest.mark.parametrize("k", SHIFTS)
def test_example_clip_shift_is_recovered(k: int, shifted_examples: dict[int, Path],
                                         example_clip: Path) -> None:
    src_bytes = example_clip.stat().st_size
    r = avsync.detect(shifted_examples[k], drift=False)
    assert abs(r.offset_frames - k) <= TOL, r.curve
    assert r.in_sync == (abs(r.offset_frames) <= 1)
    # the scored curve peaks where the result says (refined below one frame: within half a frame)
    curve = dict(zip(r.curve["offset_frames"], r.curve["score"], strict=True))
    assert abs(max(curve, key=curve.get) - r.offset_frames) <= 0.5
    assert example_clip.stat().st_size == src_bytes  # the input was not touched


def test_fix_round_trip(shifted_examples: dict[int, Path], tmp_path: Path) -> None:
    """Auto-detect + fix the +4 copy; the fixed file is back in sync."""
    late = shifted_examples[4]
    fixed = tmp_path / "fixed.mp4"
    written, used_ms = avsync.fix(late, fixed)
    assert written == fixed and fixed.is_file()
    assert abs(used_ms - frames_to_ms(4, 25.0)) <= frames_to_ms(TOL, 25.0)  # ~ +160 ms
    r = avsync.detect(fixed, drift=False)
    assert abs(r.offset_frames) <= TOL
    assert not list(tmp_path.glob(".*.avsync-tmp*"))


def test_fix_refuses_to_overwrite_without_flag(shifted_examples: dict[int, Path]) -> None:
    src, dst = shifted_examples[0], shifted_examples[4]
    before = dst.read_bytes()
    with pytest.raises(avsync.AvsyncError):
        avsync.fix(src, dst, offset_ms=40)
    assert dst.read_bytes() == before


# ----------------------------------------------------------------------------- real clips

# (relative path, frames kept: None = the whole file; long clips are cut to keep the suite fast)
REAL_CLIPS = [
    ("LipNet/evaluation/samples/GRID/brbk7n.mpg", None),
    ("PC-AVS/misc/Audio_Source/00015.mp4", None),
    ("AVCrossNet/muxed/E3_silent+target.mkv", 100),
]


@pytest.fixture(scope="module")
def real_cases(realclip, tmp_path_factory: pytest.TempPathFactory):
    """relpath -> (source clip, its own measured offset k0, folder for shifted copies)."""
    folder = tmp_path_factory.mktemp("real")
    cache: dict[str, tuple[Path, int, Path]] = {}

    def get(relpath: str, keep_frames: int | None) -> tuple[Path, int, Path]:
        if relpath not in cache:
            src = realclip(relpath)
            sub = folder / f"clip{len(cache)}"
            sub.mkdir()
            if keep_frames is not None:
                src = _trimmed(src, sub, keep_frames)
            k0 = avsync.detect(src, drift=False).offset_frames
            cache[relpath] = (src, k0, sub)
        return cache[relpath]

    return get


def _trimmed(src: Path, folder: Path, n_frames: int) -> Path:
    """The first n_frames of src (and the matching audio) re-encoded into an mp4."""
    info = probe(src)
    frames = []
    for f in iter_video_frames(src, max_side=None):
        if f.index >= n_frames:
            break
        frames.append(f.image)
    audio = load_audio(src)
    assert abs(audio.start_s - (info.video_start_s or 0.0)) < 1e-3
    n_samples = int(round(n_frames / info.fps * audio.sample_rate_hz))
    return write_av(folder / f"{src.stem}_first{n_frames}.mp4", np.stack(frames), info.fps,
                    audio.samples[:n_samples], audio.sample_rate_hz)


@pytest.mark.realdata
@pytest.mark.parametrize("relpath,keep", REAL_CLIPS, ids=[Path(p).stem for p, _ in REAL_CLIPS])
@pytest.mark.parametrize("k", SHIFTS)
def test_real_clip_shift_is_recovered(relpath: str, keep: int | None, k: int, real_cases) -> None:
    src, k0, folder = real_cases(relpath, keep)
    assert abs(k0) <= 2  # these clips are in sync (or nearly: 00015 measures +1)
    r = avsync.detect(shifted_copy(src, folder, k), drift=False)
    assert abs((r.offset_frames - k0) - k) <= TOL, (k0, r.offset_frames, r.confidence)


# ----------------------------------------------------------------------------- two faces

RIGHT_CLIP = "LipNet/evaluation/samples/GRID/brbk7n.mpg"


@pytest.mark.realdata
def test_side_by_side_two_faces(example_clip: Path, example_frames: np.ndarray, realclip,
                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Left: the example speaker, whose audio is used, 3 frames late; right: another speaker."""
    right = np.stack([f.image for f in iter_video_frames(realclip(RIGHT_CLIP), max_side=None)])
    n = min(len(example_frames), len(right))
    assert example_frames.shape[1] == right.shape[1]
    frames = np.concatenate([example_frames[:n], right[:n]], axis=2)  # np.hstack per frame
    audio = load_audio(example_clip)
    late = shift_samples(audio.samples, 3, 25.0)
    path = write_av(tmp_path / "two_faces.mp4", frames, 25, late, audio.sample_rate_hz)

    seen = {}
    real_analyse = inference.analyse_video

    def spy(*args, **kwargs):  # keep the analysis to learn where each track is
        seen["analysis"] = real_analyse(*args, **kwargs)
        return seen["analysis"]

    monkeypatch.setattr(inference, "analyse_video", spy)
    r = avsync.detect(path, drift=False)

    assert len(r.tracks) == 2
    width = seen["analysis"].image_size[0]
    centre_x = {t.track_id: np.mean([(b[0] + b[2]) / 2 for b in t.boxes])
                for t in seen["analysis"].tracks}
    left = [t for t in r.tracks if centre_x[t.track_id] < width / 2]
    right_tracks = [t for t in r.tracks if centre_x[t.track_id] >= width / 2]
    assert len(left) == 1 and len(right_tracks) == 1
    assert left[0].speaking
    assert abs(left[0].offset_frames - 3) <= TOL
    assert abs(r.offset_frames - 3) <= TOL


# ----------------------------------------------------------------------------- MPEG-PS


@pytest.mark.realdata
@pytest.mark.parametrize("suffix", [".mp4", ".mpg"])
def test_fix_of_a_fixed_mpg(realclip, tmp_path: Path, suffix: str) -> None:
    src = realclip("LipNet/evaluation/samples/GRID/bbaf2n.mpg")
    late = tmp_path / "late.mpg"
    avsync.fix(src, late, offset_ms=-160)
    out = tmp_path / f"fixed{suffix}"
    avsync.fix(late, out, offset_ms=160)
    assert out.stat().st_size > 1000
    assert probe(out).has_video and probe(out).has_audio


@pytest.mark.parametrize("method", ["syncnet", "landmark", "simmatrix", "c3", "vocalist"])
def test_shipped_trained_methods_recover_the_example_shift(method: str,
                                                           shifted_examples: dict[int, Path]) -> None:
    """Every shipped trained model finds the planted shifts of the example clip end to end (the
    shipped weights load and score a real file; held-out accuracy lives in docs/BENCHMARKS.md)."""
    from avsync.models.trained import has_weights

    if not has_weights(method):
        pytest.skip(f"no {method} weights shipped")
    for k in (-6, 4):
        r = avsync.detect(shifted_examples[k], method=method, drift=False)
        assert r.method == method and abs(r.offset_frames - k) <= TOL, (method, k, r.offset_frames)
