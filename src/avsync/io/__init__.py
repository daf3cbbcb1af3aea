"""Media I/O: probe files, stream video frames, decode audio, shift audio, write clips safely."""

from avsync.io.frames import VideoFrame, iter_video_frames
from avsync.io.media import AudioTrack, MediaInfo, load_audio, probe
from avsync.io.output import atomic_output, check_output_path
from avsync.io.remux import shift_audio
from avsync.io.writer import write_av

__all__ = [
    "AudioTrack",
    "MediaInfo",
    "VideoFrame",
    "atomic_output",
    "check_output_path",
    "iter_video_frames",
    "load_audio",
    "probe",
    "shift_audio",
    "write_av",
]
