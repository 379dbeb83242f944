"""The project's error types: each message names the input, the reason and the fix."""
from __future__ import annotations


class VoiceLibError(Exception):
    """Base class for every error voicelib raises on bad input or unavailable resources."""


class AudioError(VoiceLibError):
    """An audio file cannot be used; carries the file name and a one-line reason."""

    def __init__(self, path: object, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class AudioTooLong(AudioError):
    """An audio file is longer than the duration limit in force."""


class DataError(VoiceLibError):
    """A manifest or data directory is unusable (missing class, leakage, bad columns)."""


class LeakageError(DataError):
    """A speaker, group or sentence appears in more than one split."""


class SourceUnavailable(VoiceLibError):
    """An online data source or TTS engine cannot be reached (no network, timeout, HTTP error)."""


class ModelError(VoiceLibError):
    """A model directory or checkpoint is missing, corrupt or does not match the code."""
