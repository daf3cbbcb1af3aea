"""Member curves of held-out clips for the speaker cross-validation (``benchmarks/cv.py``).

The face analysis comes from the shared training cache (``avsync prepare``: one face track per
clip with its per-frame signals, mouth crops, lips and blendshapes), so nothing is decoded but the
audio. Each case follows the shifted-case protocol (``avsync.evaluation.protocol``): the clip's
audio is padded/trimmed by k frames (``shift_samples``), features recomputed, and every member
scores the candidate shifts -15..15. What is stored is each MEMBER's raw curve (per whole-clip
segment, as ``inference.curve`` averages them, and per short window), so that every fusion and
every fitted weight vector is evaluated from the same curves without scoring again.

Units: the whole clip and, for the duration buckets, excerpts (video frames and the audio under
them, cut as if the file were that short) of EXCERPTS_S seconds from the middle of longer clips.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avsync.evaluation.protocol import _windows
from avsync.features import AudioFeatures, audio_features, shift_samples
from avsync.inference import null_displacements, segment_bounds, shifts_for
from avsync.io import load_audio
from avsync.models.neural import NeuralInput
from avsync.models.registry import SyncInput
from avsync.timing import DEFAULT_MAX_OFFSET_FRAMES

SAMPLE_RATE_HZ: int = 16000
EXCERPTS_S: tuple[float, ...] = (1.5, 3.0, 6.0)
"""Excerpt lengths (s) cut from the middle of clips at least 1.3x as long."""
CONTEXTS: tuple[int, ...] = (5, 15, 25)
SHIFTS: tuple[int, ...] = (-12, -9, -6, -3, 0, 3, 6, 9, 12)
"""Known shifts of the cases (frames); the search is +-15 (DEFAULT_MAX_OFFSET_FRAMES)."""
N_NULL: int = 4
MAX_WINDOWS: int = 6
"""Short windows per (clip, shift, context), evenly spread (the protocol takes 12; halved for CPU)."""
GRID: np.ndarray = shifts_for(DEFAULT_MAX_OFFSET_FRAMES)


@dataclass
class TrackData:
    """One clip's cached face track (training-cache npz) and identity."""

    npz: str
    path: Path
    speaker: str
    fps: float
    times_s: np.ndarray
    signals: np.ndarray
    mouth: np.ndarray
    lips: np.ndarray
    blend: np.ndarray
    valid: np.ndarray

    @classmethod
    def load(cls, npz: str | Path) -> TrackData:
        with np.load(npz, allow_pickle=False) as z:
            return cls(str(Path(npz).name), Path(str(z["path"])), str(z["speaker"]), float(z["fps"]),
                       z["frame_times_s"].astype(np.float64), z["signals"].astype(np.float32),
                       z["mouth"], z["lips"].astype(np.float32), z["blend"].astype(np.float32),
                       z["valid"].astype(bool))

    @property
    def duration_s(self) -> float:
        return len(self.times_s) / self.fps

    def cut(self, a: int, b: int) -> TrackData:
        return TrackData(self.npz, self.path, self.speaker, self.fps, self.times_s[a:b], self.signals[a:b],
                         self.mouth[a:b], self.lips[a:b], self.blend[a:b], self.valid[a:b])

    def sync_input(self, feats: AudioFeatures) -> SyncInput:
        ninp = NeuralInput(self.fps, self.times_s, self.mouth, self.lips, self.blend, feats.logmel,
                           feats.start_s, self.valid)
        return SyncInput(self.fps, self.times_s, self.signals, feats, ninp)


@dataclass
class Unit:
    """A clip or an excerpt: its track, its audio (samples, start time) and its label."""

    track: TrackData
    samples: np.ndarray
    start_s: float
    label: str  # "whole" or the excerpt length, e.g. "1.5"

    @property
    def duration_s(self) -> float:
        return self.track.duration_s


def units(track: TrackData, excerpts_s: tuple[float, ...] = EXCERPTS_S) -> list[Unit]:
    """The whole clip plus its middle excerpts (audio cut to the excerpt's frames)."""
    audio = load_audio(track.path)
    out = [Unit(track, audio.samples, audio.start_s, "whole")]
    n = len(track.times_s)
    for ex in excerpts_s:
        m = int(round(ex * track.fps))
        if n < 1.3 * m:
            continue
        a = (n - m) // 2
        sub = track.cut(a, a + m)
        i0 = max(0, int(round((sub.times_s[0] - audio.start_s) * SAMPLE_RATE_HZ)))
        i1 = int(round((sub.times_s[-1] + 1.0 / track.fps - audio.start_s) * SAMPLE_RATE_HZ))
        if i1 - i0 < SAMPLE_RATE_HZ * ex * 0.5:
            continue
        out.append(Unit(sub, audio.samples[i0:i1], audio.start_s + i0 / SAMPLE_RATE_HZ, f"{ex:g}"))
    return out


def segment_curves(model, inp: SyncInput) -> tuple[np.ndarray, np.ndarray]:
    """(S,) segment lengths and (S, K) raw curves of ``model`` on ``inp`` (inference.curve's segments)."""
    bounds = segment_bounds(inp.n_frames, inp.fps)
    if len(bounds) == 1:
        return np.array([inp.n_frames]), np.asarray(model.score(inp, GRID), np.float64)[None]
    return (np.array([b - a for a, b in bounds]),
            np.stack([np.asarray(model.score(inp.window(a, b), GRID), np.float64) for a, b in bounds]))


@dataclass
class UnitCurves:
    """Stored curves of one unit: per member, per shift; nulls and foreign audio at shift 0."""

    clip: str
    speaker: str
    label: str
    duration_s: float
    n_frames: int
    whole: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    windows: dict[str, dict[int, dict[int, np.ndarray]]] = field(default_factory=dict)
    nulls: dict[str, list[tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    foreign: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    foreign_nulls: dict[str, list[tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)


def _min_frames(model) -> int:
    return int(getattr(model, "min_frames", 1))


def unit_curves(unit: Unit, models: dict[str, object], foreign: AudioFeatures | None = None,
                shifts: tuple[int, ...] = SHIFTS, contexts: tuple[int, ...] = CONTEXTS) -> UnitCurves:
    """Every member's curves on one unit (see the module doc). Windows only for whole clips."""
    tr = unit.track
    out = UnitCurves(str(tr.path), tr.speaker, unit.label, unit.duration_s, len(tr.times_s))
    max_shift = int(np.max(np.abs(GRID)))
    rolls = null_displacements(len(tr.times_s), max_shift, N_NULL)
    for name in models:
        out.whole[name], out.windows[name] = {}, {c: {} for c in contexts}
    for k in shifts:
        feats = audio_features(shift_samples(unit.samples, k, tr.fps), unit.start_s)
        inp = tr.sync_input(feats)
        for name, model in models.items():
            if inp.n_frames < _min_frames(model):
                continue
            out.whole[name][k] = segment_curves(model, inp)
            if k == 0:
                out.nulls[name] = [segment_curves(model, inp.rolled(int(r))) for r in rolls]
            if unit.label != "whole":
                continue
            for size in contexts:
                if size < _min_frames(model):
                    continue
                starts = _windows(inp.n_frames, size)
                if len(starts) > MAX_WINDOWS:
                    starts = [starts[i] for i in np.linspace(0, len(starts) - 1, MAX_WINDOWS).astype(int)]
                out.windows[name][size][k] = np.stack(
                    [np.asarray(model.score(inp.window(s, s + size), GRID), np.float64) for s in starts]
                ) if starts else np.zeros((0, len(GRID)))
    if foreign is not None:
        # another speaker's audio under these frames (its time axis moved onto this clip's)
        moved = AudioFeatures(foreign.times_s - foreign.start_s + float(tr.times_s[0]), foreign.values,
                              foreign.names, foreign.logmel)
        inp = tr.sync_input(moved)
        for name, model in models.items():
            if inp.n_frames < _min_frames(model):
                continue
            out.foreign[name] = segment_curves(model, inp)
            out.foreign_nulls[name] = [segment_curves(model, inp.rolled(int(r))) for r in rolls]
    return out


@dataclass
class AllWindows:
    """A trained member whose windows are pooled by ``window_pool.centred_pool`` (every window
    kept, lever "short clips use all frames"), calibrated like the member."""

    model: object
    name: str

    @property
    def min_frames(self) -> int:
        return _min_frames(self.model)

    def score(self, inp: SyncInput, shifts_frames: np.ndarray) -> np.ndarray:
        from avsync.models.calibration import calibrated_scores
        from avsync.models.window_pool import centred_pool

        m, ninp = self.model, inp.neural

        def raw(s: np.ndarray) -> np.ndarray:
            ws = m.window_scores(ninp, s)
            c = centred_pool(ws) if len(ws) else np.full(len(s), np.nan)
            return np.where(np.isfinite(c), c, np.nanmin(c)) if np.isfinite(c).any() else np.zeros(len(s))

        return calibrated_scores(raw, shifts_frames, m.calibration_frames)
