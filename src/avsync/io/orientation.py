"""Display orientation: how a decoded picture must be turned to be shown upright.

Phones store their pictures in the sensor's landscape layout and record the turn a player must
apply in a *display matrix* (``AV_FRAME_DATA_DISPLAYMATRIX`` side data; the old MP4 ``rotate``
tag maps to the same matrix). A portrait phone clip typically reads -90: libavutil's
``av_display_rotation_get`` gives the angle counter-clockwise, so -90 means "turn the stored
picture 90 degrees clockwise". avsync speaks in clockwise quarter turns (``rotation_cw``, one of
0/90/180/270), the way a person describes ``--rotate 90``.

Why the earlier ``getattr(frame, "rotation", 0)`` was not enough: ``VideoFrame.rotation`` only
exists from PyAV 14 on, while the project accepts ``av>=12``; with PyAV 13 (checked: 13.1.0)
the attribute is missing, the getattr silently returned 0 and phone clips were analysed lying
on their side. The display matrix side data itself is attached to every decoded frame by both
versions (mp4, mov, mkv), so it is read here from the side data's 36 raw bytes, with
``frame.rotation`` only as a fallback. Mirroring in the matrix is ignored (faces survive it).
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np

from avsync.errors import AvsyncError, MediaError

ROTATIONS_CW: tuple[int, ...] = (0, 90, 180, 270)
"""Clockwise turns (degrees) that ``rotate`` accepts, besides ``"auto"``."""

ROTATE_CHOICES: tuple[str, ...] = ("auto", *(str(r) for r in ROTATIONS_CW))
"""Values of the CLI's ``--rotate`` option."""


def parse_rotate(value: str | int | None) -> int | None:
    """``"auto"``/None -> None (follow the file's metadata); else the clockwise turn in degrees.

    Raises AvsyncError (one sentence) for anything but auto/0/90/180/270.
    """
    if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
        return None
    try:
        deg = int(str(value).strip())
    except ValueError:
        deg = -1
    if deg not in ROTATIONS_CW:
        raise AvsyncError(f"--rotate must be one of {', '.join(ROTATE_CHOICES)}, got {value!r}")
    return deg


def matrix_rotation_ccw(matrix: bytes) -> float | None:
    """Counter-clockwise angle (degrees) of a 3x3 display matrix (9 little-endian int32, 16.16
    fixed point), as libavutil's ``av_display_rotation_get``; None for a degenerate matrix."""
    if len(matrix) < 36:
        return None
    m = struct.unpack("<9i", matrix[:36])
    scale0, scale1 = math.hypot(m[0], m[3]), math.hypot(m[1], m[4])
    if scale0 == 0 or scale1 == 0:
        return None
    return -math.degrees(math.atan2(m[1] / scale1, m[0] / scale0))


def _side_data_matrix(frame: Any) -> bytes | None:
    try:
        for item in frame.side_data:  # PyAV 12-18 iterate SideData objects
            if "DISPLAYMATRIX" in str(getattr(item, "type", "")).upper():
                return bytes(item)
    except (AttributeError, TypeError, ValueError, KeyError):
        return None
    return None


def ccw_to_cw(angle_ccw: float) -> int:
    """Counter-clockwise angle (any sign) -> clockwise quarter turn in ROTATIONS_CW."""
    return int(round(-angle_ccw / 90.0)) % 4 * 90


def frame_rotation_cw(frame: Any) -> int:
    """Clockwise turn (0/90/180/270) that shows a decoded PyAV frame upright (0 without metadata)."""
    matrix = _side_data_matrix(frame)
    angle = matrix_rotation_ccw(matrix) if matrix is not None else None
    if angle is None:
        angle = float(getattr(frame, "rotation", 0) or 0)  # PyAV >= 14
    return ccw_to_cw(angle)


def rotate_image(image: np.ndarray, rotation_cw: int) -> np.ndarray:
    """``image`` (H, W, ...) turned ``rotation_cw`` degrees clockwise (contiguous copy if turned)."""
    k = (rotation_cw // 90) % 4
    return image if k == 0 else np.ascontiguousarray(np.rot90(image, k=-k))


def display_rotation_cw(path: Any) -> int:
    """Clockwise turn (0/90/180/270) the display metadata of ``path``'s video asks for.

    Decodes the first video frame (the side data travels with frames). MediaError when the file
    has no decodable video.
    """
    from avsync.io.media import check_input_file, decode_frames, open_input, video_stream

    p = check_input_file(path)
    with open_input(p) as c:
        stream = video_stream(c)
        if stream is None:
            raise MediaError(f"{p} has no video stream.")
        for frame in decode_frames(c, stream, p):
            return frame_rotation_cw(frame)
    return 0
