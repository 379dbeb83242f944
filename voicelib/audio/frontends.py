"""The torch front ends, batched [B, T] -> [B, bins, frames] on CPU or GPU: log-mel, linear, LFCC, multi-res, CQT.

Training and torch detection run these modules; their settings and matrices come from `voicelib.audio.features`
(torch-free, so that ONNX detection never imports torch), which also forwards every name defined here.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn

from voicelib.audio.features import (
    FeatureConfig,
    bin_pooling,
    cqt_kernel,
    dct_matrix,
    linear_filterbank,
    mel_filterbank,
)
from voicelib.audio.whisper_mel import WhisperLogMel


def frontend(cfg: FeatureConfig | None = None) -> nn.Module:
    """The front-end module `cfg.kind` names: waves [B, T] -> features [B, n_bins(cfg), frames]."""
    cfg = cfg or FeatureConfig()
    kinds = {"logmel": LogMel, "linear": LinearSpectrogram, "lfcc": LFCC, "multires": MultiResolution, "cqt": ConstantQ,
             "whisper": WhisperLogMel}
    return kinds[cfg.kind](cfg)


def _as_batch(wave: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """Return a float [B, T] tensor and whether the input was a single [T] wave."""
    if not torch.is_tensor(wave):
        raise TypeError(f"expected a torch tensor of samples, got {type(wave).__name__}; "
                        "use features.log_mel for numpy")
    if wave.dim() not in (1, 2):
        raise ValueError(f"expected waves shaped [T] or [B, T], got {tuple(wave.shape)}")
    if not wave.is_floating_point() or wave.dtype in (torch.float16, torch.bfloat16):
        wave = wave.float()
    return (wave.unsqueeze(0), True) if wave.dim() == 1 else (wave, False)


class _Spectrogram(nn.Module):
    """Shared STFT power spectrogram with a registered Hann window."""

    def __init__(self, cfg: FeatureConfig, *, n_fft: int | None = None, win_length: int | None = None):
        super().__init__()
        self.cfg = cfg
        self.n_fft, self.win_length = n_fft or cfg.n_fft, win_length or cfg.win_length
        # derived from cfg, so not saved in checkpoints (persistent=False keeps state_dicts free of them)
        self.register_buffer("window", torch.hann_window(self.win_length, periodic=True), persistent=False)

    def power_spectrogram(self, wave: torch.Tensor) -> torch.Tensor:
        """|STFT|^2 of [B, T] float waves: [B, n_fft // 2 + 1, frames]."""
        cfg = self.cfg
        if wave.shape[-1] == 0:
            raise ValueError("cannot compute features of an empty wave; check the audio was loaded")
        spec = torch.stft(wave, self.n_fft, hop_length=cfg.hop_length, win_length=self.win_length,
                          window=self.window.to(wave.dtype), center=cfg.center, pad_mode=cfg.pad_mode,
                          return_complex=True)
        return spec.real.square() + spec.imag.square()


class LogMel(_Spectrogram):
    """Waves [B, T] (or [T]) -> log(mel power + eps) [B, n_mels, frames] (or [n_mels, frames])."""

    def __init__(self, cfg: FeatureConfig | None = None):
        cfg = cfg or FeatureConfig()
        super().__init__(cfg)
        self.register_buffer("mel_fb", torch.from_numpy(mel_filterbank(cfg)), persistent=False)

    def power_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """Mel power spectrogram, equal to librosa.feature.melspectrogram with the same settings."""
        batch, single = _as_batch(wave)
        mel = torch.matmul(self.mel_fb.to(batch.dtype), self.power_spectrogram(batch))
        return mel[0] if single else mel

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """Log-mel features."""
        batch, single = _as_batch(wave)
        out = torch.log(self.power_mel(batch) + self.cfg.log_eps)
        if self.cfg.top_db is not None:
            floor = out.amax(dim=(-2, -1), keepdim=True) - self.cfg.top_db * float(np.log(10.0)) / 10.0
            out = torch.maximum(out, floor)
        return out[0] if single else out


def _clamp_top_db(out: torch.Tensor, top_db: float | None) -> torch.Tensor:
    """Clamp each example's natural-log power to (its max - top_db dB); None keeps all."""
    if top_db is None:
        return out
    return torch.maximum(out, out.amax(dim=(-2, -1), keepdim=True) - top_db * float(np.log(10.0)) / 10.0)


class LinearSpectrogram(_Spectrogram):
    """Full-band linear-frequency log power spectrogram: [B, n_fft // 2 + 1 (or n_linear_bins), frames]."""

    def __init__(self, cfg: FeatureConfig | None = None):
        cfg = cfg or FeatureConfig(kind="linear")
        super().__init__(cfg)
        full = cfg.n_fft // 2 + 1
        pool = None if cfg.n_linear_bins in (None, full) else torch.from_numpy(bin_pooling(full, cfg.n_linear_bins))
        self.register_buffer("pool", pool, persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """log(power + eps) per linear bin."""
        batch, single = _as_batch(wave)
        power = self.power_spectrogram(batch)
        if self.pool is not None:
            power = torch.matmul(self.pool.to(batch.dtype), power)
        out = _clamp_top_db(torch.log(power + self.cfg.log_eps), self.cfg.top_db)
        return out[0] if single else out


class MultiResolution(nn.Module):
    """Log power spectrograms at several window lengths on one linear grid, concatenated along frequency."""

    def __init__(self, cfg: FeatureConfig | None = None):
        super().__init__()
        cfg = cfg or FeatureConfig(kind="multires")
        self.cfg = cfg
        self.stfts = nn.ModuleList(_Spectrogram(cfg, n_fft=max(w, cfg.hop_length), win_length=w)
                                   for w in cfg.multires_windows)
        for i, stft in enumerate(self.stfts):
            pool = bin_pooling(stft.n_fft // 2 + 1, cfg.multires_bins)
            self.register_buffer(f"pool{i}", torch.from_numpy(pool), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """[B, len(windows) * multires_bins, frames], short windows first."""
        batch, single = _as_batch(wave)
        parts = []
        for i, stft in enumerate(self.stfts):
            power = torch.matmul(getattr(self, f"pool{i}").to(batch.dtype), stft.power_spectrogram(batch))
            parts.append(torch.log(power + self.cfg.log_eps))
        out = _clamp_top_db(torch.cat(parts, dim=-2), self.cfg.top_db)
        return out[0] if single else out


class ConstantQ(nn.Module):
    """Log constant-Q power [B, n_bins, frames]: |kernel @ STFT|^2 with a rectangular n_fft window."""

    def __init__(self, cfg: FeatureConfig | None = None):
        super().__init__()
        cfg = cfg or FeatureConfig(kind="cqt")
        self.cfg = cfg
        kernel, self.n_fft = cqt_kernel(cfg)
        self.register_buffer("kernel", torch.from_numpy(kernel.astype(np.complex64)), persistent=False)
        self.register_buffer("window", torch.ones(self.n_fft), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """log(CQT power + eps)."""
        batch, single = _as_batch(wave)
        if batch.shape[-1] == 0:
            raise ValueError("cannot compute features of an empty wave; check the audio was loaded")
        spec = torch.stft(batch.float(), self.n_fft, hop_length=self.cfg.hop_length, window=self.window,
                          center=True, pad_mode="constant", return_complex=True)
        cq = torch.matmul(self.kernel, spec)
        out = _clamp_top_db(torch.log(cq.real.square() + cq.imag.square() + self.cfg.log_eps), self.cfg.top_db)
        return out.to(batch.dtype)[0] if single else out.to(batch.dtype)


def deltas(coeffs: torch.Tensor, *, width: int = 2) -> torch.Tensor:
    """Regression deltas over frames (last axis) with edge replication, as in HTK."""
    frames = coeffs.shape[-1]
    padded = torch.nn.functional.pad(coeffs, (width, width), mode="replicate")
    num = sum(n * (padded[..., width + n:width + n + frames] - padded[..., width - n:width - n + frames])
              for n in range(1, width + 1))
    return num / (2 * sum(n * n for n in range(1, width + 1)))


class LFCC(_Spectrogram):
    """ASVspoof-style LFCC: linear filterbank, log, DCT-II (ortho), optional deltas: [B, n_bins, frames]."""

    def __init__(self, cfg: FeatureConfig | None = None):
        cfg = cfg or FeatureConfig()
        super().__init__(cfg)
        dct = dct_matrix(cfg.n_linear)[: cfg.n_lfcc]
        self.register_buffer("linear_fb", torch.from_numpy(linear_filterbank(cfg)), persistent=False)
        self.register_buffer("dct", torch.from_numpy(dct.astype(np.float32)), persistent=False)

    @property
    def n_bins(self) -> int:
        """Number of output coefficients per frame."""
        return self.cfg.n_lfcc * (3 if self.cfg.lfcc_deltas else 1)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """LFCC features."""
        batch, single = _as_batch(wave)
        energies = torch.matmul(self.linear_fb.to(batch.dtype), self.power_spectrogram(batch))
        coeffs = torch.matmul(self.dct.to(batch.dtype), torch.log(energies + self.cfg.log_eps))
        if self.cfg.lfcc_deltas:
            first = deltas(coeffs)
            coeffs = torch.cat([coeffs, first, deltas(first)], dim=-2)
        return coeffs[0] if single else coeffs


@functools.lru_cache(maxsize=8)
def _module(kind: str, cfg: FeatureConfig) -> nn.Module:
    """One cached CPU module per (kind, config) for the numpy helpers."""
    return (LogMel if kind == "logmel" else LFCC)(cfg).eval()


def _numpy_features(kind: str, wave: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Run a cached module on a numpy wave ([T] or [B, T]) without gradients."""
    array = np.asarray(wave, dtype=np.float32)
    if not array.flags.writeable:  # torch.from_numpy warns on read-only memory
        array = array.copy()
    with torch.no_grad():
        return _module(kind, cfg)(torch.from_numpy(array)).numpy()


def log_mel(wave: np.ndarray, cfg: FeatureConfig | None = None) -> np.ndarray:
    """Log-mel features of a float wave [T] -> [n_mels, frames] (or [B, T] -> [B, n_mels, frames])."""
    return _numpy_features("logmel", wave, cfg or FeatureConfig())


def lfcc(wave: np.ndarray, cfg: FeatureConfig | None = None) -> np.ndarray:
    """LFCC features of a float wave [T] -> [n_bins, frames] (or batched)."""
    return _numpy_features("lfcc", wave, cfg or FeatureConfig())
