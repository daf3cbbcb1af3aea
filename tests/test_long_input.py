"""Long inputs: streamed audio features, compact crop storage, answers unchanged, a 10-minute file.

Figures for 1..60-minute files (peak memory, time per minute, default method) are in
docs/BENCHMARKS.md ("Long inputs"), made by benchmarks/long_input.py.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import avsync.features as features
from avsync.face.rows import RowStore, rows_array
from avsync.features import audio_features, stream_features
from avsync.io import load_audio
from avsync.io.audio import iter_audio_blocks
from avsync.models.calibration import round_frames

ROOT = Path(__file__).resolve().parents[1]


def test_rowstore_behaves_like_a_list_and_consolidates_in_place() -> None:
    rng = np.random.default_rng(0)
    rows = [rng.integers(0, 255, (4, 3), dtype=np.uint8) for _ in range(300)]
    store = RowStore((4, 3), np.uint8, block_rows=64)
    for r in rows:
        store.append(r)
    assert len(store) == 300
    assert np.array_equal(store[-1], rows[-1]) and np.array_equal(store[37], rows[37])
    assert np.array_equal(np.stack(store), np.stack(rows))  # iteration, as a list
    with pytest.raises(IndexError):
        store[300]
    arr = rows_array(store)
    assert arr.shape == (300, 4, 3) and np.array_equal(arr, np.stack(rows))
    assert store.array() is arr  # consolidated: no second copy
    store.append(store[-1])  # a gap frame repeats the previous row
    assert len(store) == 301 and np.array_equal(store[-1], rows[-1])
    assert np.array_equal(store.array()[:300], arr)
    assert np.array_equal(rows_array(rows), np.stack(rows))  # plain lists still work


@pytest.mark.parametrize("block_hops", [features.BLOCK_HOPS, 37])
def test_streamed_audio_features_are_identical(example_clip: Path, monkeypatch,
                                               block_hops: int) -> None:
    """Decoding in blocks + FeatureAccumulator == the whole track in memory, bit for bit
    (with 37-hop feature blocks the 3 s clip crosses many block boundaries)."""
    monkeypatch.setattr(features, "BLOCK_HOPS", block_hops)
    whole = load_audio(example_clip)
    ref = audio_features(whole.samples, whole.start_s)
    feats, rms = stream_features(iter_audio_blocks(example_clip))
    assert np.array_equal(feats.values, ref.values)
    assert np.array_equal(feats.logmel, ref.logmel)
    assert np.array_equal(feats.times_s, ref.times_s)
    assert rms == pytest.approx(float(np.sqrt(np.mean(np.square(whole.samples, dtype=np.float64)))))
    # And both match an independent whole-signal computation (one centred STFT, no blocks).
    want_values, want_logmel = _whole_signal_features(whole.samples)
    np.testing.assert_allclose(feats.values, want_values, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(feats.logmel, want_logmel, rtol=1e-4, atol=1e-3)
    lean, _ = stream_features(iter_audio_blocks(example_clip), keep_logmel=False)  # non-neural
    assert lean.logmel is None and np.array_equal(lean.values, ref.values)
    # Odd block sizes fed by hand give the same features too.
    acc = features.FeatureAccumulator(whole.start_s)
    for i in range(0, len(whole.samples), 1237):
        acc.feed(whole.samples[i: i + 1237])
    assert np.array_equal(acc.finish().values, ref.values)


def _whole_signal_features(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUDIO_NAMES columns and log-mel from one centred STFT of the whole signal."""
    from avsync.timing import AUDIO_WIN_SAMPLES, SAMPLE_RATE_HZ

    power = features.power_spectrogram(samples).astype(np.float64)
    freqs = np.linspace(0, SAMPLE_RATE_HZ / 2, AUDIO_WIN_SAMPLES // 2 + 1)
    fb = features.mel_filterbank(features.N_MELS, AUDIO_WIN_SAMPLES, SAMPLE_RATE_HZ).T
    logmel = np.log(power @ fb + 1e-8)
    flux = np.clip(np.diff(logmel, axis=0, prepend=logmel[:1]), 0, None).mean(1)
    band = [np.log(power[:, (freqs >= lo) & (freqs < hi)].sum(1) + 1e-8)
            for lo, hi in ((300, 3000), *features.BANDS_HZ)]
    mfcc = logmel @ features.dct_matrix(features.N_MFCC, features.N_MELS).T
    values = np.column_stack([np.log(power.sum(1) + 1e-8), band[0], flux, *band[1:], mfcc])
    return values, logmel


def _reference_synchronise(path: Path, analysis, method: str):
    """The pre-streaming pipeline: the whole audio track in memory, crops as plain lists, and
    no cached model outputs (what the cap on the output cache falls back to on long tracks)."""
    from avsync.inference import _fps_from_times, synchronise
    from avsync.io import probe
    from avsync.models import score_cache
    from avsync.models.registry import create_model

    score_cache.OUT_CACHE_MAX_ENTRIES = 0  # (restored by the caller's monkeypatch) no output cache

    audio = load_audio(path)
    feats = audio_features(audio.samples, audio.start_s)
    listed = copy.deepcopy(analysis)
    for t in listed.tracks:
        t.mouth, t.lips = list(t.mouth), list(t.lips)
    fps = probe(path).fps or _fps_from_times(analysis.frame_times_s)
    return synchronise(listed, feats, fps, create_model(method))


@pytest.mark.parametrize("clip", ["example", "PC-AVS/misc/Audio_Source/00015.mp4",
                                  "lip-reading-deeplearning/data/sample_video.mp4"])
def test_default_method_answers_unchanged(clip: str, example_clip: Path, request,
                                          monkeypatch, one_thread) -> None:
    """detect (streamed audio, compact crops, output cache) == the in-memory pipeline without an
    output cache: same offsets, same confidences (within 0.1), same drift, on the example and
    two real clips."""
    from avsync import inference
    from avsync.models.registry import DEFAULT_METHOD

    path = example_clip if clip == "example" else request.getfixturevalue("realclip")(clip)
    seen = {}
    real_analyse = inference.analyse_video

    def keep(*args, **kwargs):
        seen["analysis"] = real_analyse(*args, **kwargs)
        seen["copy"] = copy.deepcopy(seen["analysis"])  # before scoring consolidates the crops
        return seen["analysis"]

    monkeypatch.setattr(inference, "analyse_video", keep)
    result = inference.detect(path, method=DEFAULT_METHOD)
    assert isinstance(seen["copy"].tracks[0].mouth, RowStore)
    from avsync.models import score_cache

    monkeypatch.setattr(score_cache, "OUT_CACHE_MAX_ENTRIES", score_cache.OUT_CACHE_MAX_ENTRIES)
    tracks, cs = _reference_synchronise(path, seen["copy"], DEFAULT_METHOD)
    assert result.offset_frames == round_frames(cs.offset_frames)
    assert abs(result.confidence - cs.confidence) <= 0.1
    assert [t.offset_frames for t in result.tracks] == [t.offset_frames for t in tracks]
    for new, ref in zip(result.tracks, tracks, strict=True):
        assert abs(new.confidence - ref.confidence) <= 0.1
        assert [p.offset_frames for p in new.drift] == [p.offset_frames for p in ref.drift]
    assert result.audio_stream["index"] == 0


CHILD = """
import json, resource, sys
from avsync.inference import detect
r = detect(sys.argv[1], method=sys.argv[2], max_offset_ms=0.0)
print(json.dumps({"offset_frames": r.offset_frames, "duration_s": r.duration_s,
                  "confidence": r.confidence, "cpu_s": sum(resource.getrusage(resource.RUSAGE_SELF)[:2]),
                  "drift_end_s": max((p.end_s for t in r.tracks for p in t.drift), default=0.0),
                  "n_drift": sum(len(t.drift) for t in r.tracks),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _detect_in_child(path: Path, method: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path), method], env=env, capture_output=True,
                          text=True, timeout=1200, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg binary")
def test_ten_minute_file(example_clip: Path, tmp_path: Path) -> None:
    """A 10-minute file (the real example clip looped; 12.5 fps, 180x144 to keep CI affordable),
    default method: analysed segment by segment (avsync.streaming), drift over the whole file,
    peak memory within +25% of a 1-minute file (which is analysed in memory), CPU linear.

    The wide search is off in both runs (``max_offset_ms=0``, as ``detect --max-offset-ms 0``):
    on an unreliable long file it runs a second streaming pass while the in-memory 1-minute file
    only re-scores, so with it the CPU comparison would not be like with like (it failed so,
    16.2x for 10x, on a fresh CI machine). The second pass itself is tested against the in-memory
    pipeline in test_long_input_segments.py."""
    from avsync.models.registry import DEFAULT_METHOD

    small = tmp_path / "small.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(example_clip), "-vf",
                    "fps=12.5,scale=180:144", "-c:v", "libx264", "-preset", "veryfast", "-c:a",
                    "copy", str(small)], check=True)
    runs = {}
    for minutes in (1, 10):
        listing = tmp_path / f"list{minutes}.txt"
        listing.write_text(f"file '{small}'\n" * (20 * minutes))  # 3 s clip
        path = tmp_path / f"long{minutes}.mp4"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i",
                        str(listing), "-c", "copy", str(path)], check=True)
        runs[minutes] = _detect_in_child(path, DEFAULT_METHOD)
    ten = runs[10]
    print(json.dumps(runs))
    assert 600 <= ten["duration_s"] <= 610  # 200 x 3.04 s (the last frame's duration)
    # (no accuracy check: the default method is out of its depth at 12.5 fps 180x144; streamed
    # answers are checked against the in-memory pipeline in test_long_input_segments.py)
    assert abs(ten["offset_frames"]) <= 15, runs
    # 2 s drift windows over the whole file
    assert ten["drift_end_s"] >= ten["duration_s"] - 2 * 2.0 and ten["n_drift"] >= 290, runs
    assert ten["cpu_s"] <= 10 * 1.5 * runs[1]["cpu_s"], runs  # linear (generous: load, start-up)
    assert ten["peak_rss_mb"] <= 1.25 * runs[1]["peak_rss_mb"], runs
