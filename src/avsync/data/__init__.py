"""Training data: a compact per-clip cache (no video decoding while training) and speaker splits.

``build_cache`` turns clips into ``.npz`` files (see :mod:`avsync.data.cache` for the exact
format); ``speaker_split`` / ``read_split`` give speaker-disjoint train/validation clip lists.
"""

from avsync.data.cache import (
    CACHE_KEYS,
    CACHE_VERSION,
    ClipSkipped,
    build_cache,
    build_clip_cache,
    frame_to_logmel_index,
    load_clip_cache,
)
from avsync.data.splits import (
    REALCLIPS_SPLIT,
    read_split,
    speaker_group,
    speaker_split,
    split_cache_files,
    split_summary,
    write_split,
)

__all__ = [
    "CACHE_KEYS",
    "CACHE_VERSION",
    "REALCLIPS_SPLIT",
    "ClipSkipped",
    "build_cache",
    "build_clip_cache",
    "frame_to_logmel_index",
    "load_clip_cache",
    "read_split",
    "speaker_group",
    "speaker_split",
    "split_cache_files",
    "split_summary",
    "write_split",
]
