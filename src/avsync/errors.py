"""Errors that reach the user as one clear sentence (the CLI prints them without a traceback)."""


class AvsyncError(Exception):
    """Base class: the message is one sentence meant for the user."""


class MediaError(AvsyncError):
    """The file cannot be read as media, or lacks a stream we need."""


class NoFaceError(AvsyncError):
    """No usable face (mouth) was found in the video."""


class SilentAudioError(AvsyncError):
    """The audio track carries no usable signal."""


class OutputError(AvsyncError):
    """The output path is unusable (same as input, unwritable folder, ...)."""
