"""voicelib: collect speech, train and evaluate detectors of AI-generated speech, score audio files."""
from __future__ import annotations

__version__ = "0.1.0"

from voicelib.errors import AudioError, DataError, LeakageError, ModelError, SourceUnavailable, VoiceLibError

__all__ = ["AudioError", "DataError", "LeakageError", "ModelError", "SourceUnavailable", "VoiceLibError", "__version__"]
