"""Timing constants and every frame <-> sample <-> millisecond conversion, defined once.

Sign convention used everywhere in avsync: ``offset > 0`` means the audio is LATE, i.e. a sound
is heard after the lip movement that made it. To fix a file whose audio is late by ``d`` seconds
the audio is moved ``d`` seconds earlier.
"""

from __future__ import annotations

import math

SAMPLE_RATE_HZ: int = 16_000
"""Audio is decoded to mono at this rate for analysis."""

AUDIO_HOP_S: float = 0.010
"""Hop of the short-time audio analysis (10 ms); audio features are then resampled to frames."""

AUDIO_HOP_SAMPLES: int = round(SAMPLE_RATE_HZ * AUDIO_HOP_S)
AUDIO_WIN_SAMPLES: int = 2 * AUDIO_HOP_SAMPLES * 2  # 40 ms window (640 samples)

DEFAULT_MAX_OFFSET_FRAMES: int = 15
"""Search range +-15 frames (0.6 s at 25 fps), the protocol of the literature."""

DRIFT_WINDOW_S: float = 2.0
"""Length of the sliding windows of the offset-over-time curve."""


def samples_per_frame(fps: float, sample_rate_hz: int = SAMPLE_RATE_HZ) -> float:
    """Audio samples per video frame (not an integer at 29.97 fps)."""
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    return sample_rate_hz / fps


def frames_to_ms(offset_frames: float, fps: float) -> float:
    """Offset in video frames -> milliseconds."""
    return 1000.0 * offset_frames / fps


def ms_to_frames(offset_ms: float, fps: float) -> float:
    """Offset in milliseconds -> video frames (fractional)."""
    return offset_ms * fps / 1000.0


def frames_to_samples(offset_frames: float, fps: float, sample_rate_hz: int = SAMPLE_RATE_HZ) -> int:
    """Offset in frames -> whole audio samples (rounded to the nearest sample)."""
    return int(round(offset_frames * samples_per_frame(fps, sample_rate_hz)))


def frame_count(duration_s: float, fps: float) -> int:
    """Number of whole frames that fit in ``duration_s``."""
    return max(0, int(math.floor(duration_s * fps + 1e-6)))
