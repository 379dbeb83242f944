"""Whisper's log-mel front end (as faster-whisper computes it): 80 Slaney mel bands of 25 ms frames every 10 ms.

Variable-length input (the mode this project uses, measured 3.6x cheaper than padding every chunk to Whisper's
30 s window, bench/results/whisper_encoder.md): `log_mel(wave, padding=0)` gives T / 160 frames.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from voicelib.config import SAMPLE_RATE

N_FFT = 400
HOP_LENGTH = 160
N_MELS = 80
WINDOW_SAMPLES = 30 * SAMPLE_RATE  # Whisper's training window: 480000 samples -> 3000 frames -> 1500 states


@functools.lru_cache(maxsize=4)
def mel_filters(n_mels: int = 80) -> np.ndarray:
    """Slaney-style mel filterbank [n_mels, N_FFT // 2 + 1], computed as faster-whisper (and librosa) do."""
    fft_freqs = np.fft.rfftfreq(n=N_FFT, d=1.0 / SAMPLE_RATE)
    mels = np.linspace(0.0, 45.245640471924965, n_mels + 2)  # 0 Hz .. 8 kHz on the Slaney mel scale
    freqs = 200.0 / 3 * mels
    log_region = mels >= 15.0  # above 1000 Hz the Slaney scale is logarithmic
    freqs[log_region] = 1000.0 * np.exp(np.log(6.4) / 27.0 * (mels[log_region] - 15.0))
    ramps = freqs[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / np.diff(freqs)[:-1, None]
    upper = ramps[2:] / np.diff(freqs)[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper)) * (2.0 / (freqs[2:] - freqs[:-2]))[:, None]
    return weights.astype(np.float32)


def pad_or_trim(wave: torch.Tensor, length: int = WINDOW_SAMPLES) -> torch.Tensor:
    """Zero-pad or cut the last axis of `wave` to exactly `length` samples."""
    return wave[..., :length] if wave.shape[-1] >= length else F.pad(wave, (0, length - wave.shape[-1]))


def log_mel(wave: torch.Tensor, *, padding: int = 160, n_mels: int = 80) -> torch.Tensor:
    """Whisper log-mel [B, n_mels, (T + padding) // 160] of 16 kHz audio [B, T], as faster-whisper computes it."""
    if wave.dim() != 2 or wave.shape[-1] + padding <= N_FFT // 2:
        raise ValueError(f"log_mel expects a [batch, samples] wave longer than {N_FFT // 2} samples, "
                         f"got shape {tuple(wave.shape)}; add a batch axis with wave[None]")
    wave = F.pad(wave.float(), (0, padding))
    window = torch.hann_window(N_FFT, periodic=True, device=wave.device)
    spec = torch.stft(wave, N_FFT, HOP_LENGTH, window=window, center=True, pad_mode="reflect", return_complex=True)
    mel = torch.tensor(mel_filters(n_mels), device=wave.device) @ spec[..., :-1].abs().square()
    log = mel.clamp(min=1e-10).log10()
    log = torch.maximum(log, log.amax(dim=(1, 2), keepdim=True) - 8.0)  # per example (faster-whisper: per call)
    return (log + 4.0) / 4.0


def window_log_mel(wave: torch.Tensor) -> torch.Tensor:
    """Log-mel [B, 80, 3000] of the 30 s window Whisper was trained on (wave zero-padded or cut, as openai-whisper)."""
    return log_mel(pad_or_trim(wave), padding=0)


class WhisperLogMel(nn.Module):
    """Front end module: waves [B, T] at 16 kHz -> Whisper log-mel [B, 80, T // 160] (variable length)."""

    def __init__(self, cfg: object = None):
        super().__init__()  # the settings are Whisper's own: `cfg` (a FeatureConfig of kind "whisper") changes nothing

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """Log-mel of a batch [B, T] -> [B, 80, frames]; a single wave [T] -> [80, frames], as the other front ends."""
        return log_mel(wave[None], padding=0)[0] if wave.dim() == 1 else log_mel(wave, padding=0)
