"""Checks shared by the engine tests: a synthesised wave is speech-like, a collected clip is stored right."""
from __future__ import annotations

import numpy as np
import soundfile as sf

from voicelib.data.manifest import COLUMNS


def check_wave(wave: np.ndarray, sr: int, *, rate: int, min_seconds: float = 0.5, max_seconds: float = 15.0) -> None:
    """Mono float wave at `rate`, of a plausible length, not silent, not clipped flat."""
    assert sr == rate and wave.ndim == 1 and wave.dtype == np.float32
    assert min_seconds <= len(wave) / sr <= max_seconds
    assert np.isfinite(wave).all() and np.sqrt(np.mean(wave.astype(np.float64) ** 2)) > 1e-3


def check_rows(rows: list[dict], *, engine: str, family: str, language: str) -> None:
    """Rows name the engine and family, and point at 16 kHz mono FLAC files."""
    assert rows
    for row in rows:
        assert set(COLUMNS) <= set(row) and row["label"] == "ai"
        assert row["engine"] == engine and row["family"] == family and row["language"] == language
        info = sf.info(row["path"])
        assert info.samplerate == 16000 and info.channels == 1 and info.format == "FLAC"


def edge_silence(path) -> tuple[float, float]:
    """Seconds of leading and trailing audio more than 40 dB below the clip's peak."""
    wave, sr = sf.read(path, dtype="float32")
    loud = np.flatnonzero(np.abs(wave) > np.abs(wave).max() * 10 ** (-40 / 20))
    return loud[0] / sr, (len(wave) - 1 - loud[-1]) / sr
