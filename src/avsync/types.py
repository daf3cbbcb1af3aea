"""Result types. Units are in the names; ``offset > 0`` means the audio is LATE."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class DriftPoint:
    """Offset measured in one sliding window of the offset-over-time curve."""

    start_s: float
    end_s: float
    offset_frames: float
    offset_ms: float
    confidence: float


@dataclass
class TrackResult:
    """Offset of one face track (one face within one shot)."""

    track_id: int
    shot: int
    start_s: float
    end_s: float
    n_frames: int
    offset_frames: float
    offset_ms: float
    confidence: float
    speaking: bool
    drift: list[DriftPoint] = field(default_factory=list)


@dataclass
class SyncResult:
    """What ``avsync.detect`` returns for one file.

    offset_frames / offset_ms: > 0 means the audio is late (heard after the lips move);
    offset_frames is the score curve's peak refined below one frame (one decimal) and offset_ms
    the same refined value in ms; ``avsync fix`` moves the audio earlier by offset_ms.
    confidence: how far the sync peak stands above the peaks that unrelated (circularly
    displaced) audio produces, in standard deviations of those null peaks.
    curve: score per candidate offset (frames) of the speaking track(s).
    container_offset_ms: audio stream start - video stream start as the container states it
    (> 0: the container delays the audio). The measured offset already includes it (audio is
    placed on the container clock); it tells a muxing error from a content offset.
    search_range_ms: half-range of the wide search for large offsets (avsync.search) when it ran,
    else 0 (the normal +-max_offset_frames search only).
    """

    path: str
    method: str
    fps: float
    duration_s: float
    offset_frames: float
    offset_ms: float
    confidence: float
    in_sync: bool
    reliable: bool
    tracks: list[TrackResult]
    curve: dict[str, list[float]]
    timings_s: dict[str, float] = field(default_factory=dict)
    container_offset_ms: float = 0.0
    search_range_ms: float = 0.0
    audio_stream: dict | None = None
    """The audio stream measured (avsync.io.audio.AudioStreamInfo: index, codec, channels,
    sample_rate_hz, language, ...)."""

    def to_dict(self) -> dict:
        return asdict(self)
