"""Griffin-Lim phase reconstruction of human clips from their 80-band mel spectrogram (librosa)."""
from __future__ import annotations

import logging

import numpy as np

from voicelib.config import SAMPLE_RATE
from voicelib.data.sources.vocode import load_source

log = logging.getLogger(__name__)

FAMILY = "vocoder"
N_MELS, N_FFT, HOP, ITERATIONS = 80, 1024, 256, 32


def available() -> tuple[bool, str]:
    """librosa is a core dependency: always available."""
    return True, ""


def resynthesize(x: np.ndarray, sr: int, *, seed: int = 0, n_iter: int = ITERATIONS) -> np.ndarray:
    """Mel spectrogram (80 bands) back to a wave with seeded Griffin-Lim."""
    import librosa

    x = np.asarray(x, dtype=np.float32)
    mel = librosa.feature.melspectrogram(y=x, sr=sr, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS, power=2.0)
    stft = librosa.feature.inverse.mel_to_stft(mel, sr=sr, n_fft=N_FFT, power=2.0)
    return librosa.griffinlim(stft, n_iter=n_iter, hop_length=HOP, n_fft=N_FFT, length=len(x), random_state=seed)


def synthesize(*, source: str, seed: int = 0) -> tuple[np.ndarray, int]:
    """Griffin-Lim copy of the clip at `source`; return (float32 wave, 16000). Deterministic under `seed`."""
    y = resynthesize(load_source(source), SAMPLE_RATE, seed=seed)
    return np.clip(y, -1.0, 1.0).astype(np.float32), SAMPLE_RATE
