"""Front ends as batched torch modules [B, T] -> [B, bins, frames], CPU or GPU: log-mel, linear, LFCC, multi-res, CQT.

`FeatureConfig.kind` picks the detector's input: "logmel" (80 mel bands, the default), "linear" (full-band
linear-frequency log power spectrogram), "lfcc" (cepstra of a linear filterbank, as the ASVspoof baseline),
"multires" (log power spectrograms at several window lengths, each resampled onto one linear bin grid and
concatenated along frequency) or "cqt" (log constant-Q power: Brown and Puckette's spectral-kernel CQT, one
STFT as long as the longest kernel times a fixed kernel matrix; always centred). Muller et al. 2022 found
linear and CQT front ends generalise better to unseen attacks than mel. `frontend(cfg)` builds the module and
`n_bins(cfg)` says how many bins it yields. `cfg.cmvn` says whether the model normalises each utterance per
bin (model.normalize_features) before the network.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
from dataclasses import dataclass
from typing import Any

import librosa
import numpy as np
import scipy.fft
import torch
from torch import nn

from voicelib.audio.whisper_mel import WhisperLogMel
from voicelib.config import SAMPLE_RATE

log = logging.getLogger(__name__)

KINDS = ("logmel", "linear", "lfcc", "multires", "cqt", "whisper")  # whisper: Whisper's own log-mel (its encoder)
# front ends by name (FeatureConfig.from_dict("linear80")): each kind with its defaults, and linear80 -- the
# linear bins pooled onto 80 equal-width bands, a linear front end at the network cost of 80 mel bands
PRESETS: dict[str, dict[str, Any]] = {**{kind: {"kind": kind} for kind in KINDS},
                                      "linear80": {"kind": "linear", "n_linear_bins": 80},
                                      "whisper": {"kind": "whisper", "n_fft": 400, "hop_length": 160, "n_mels": 80}}


@dataclass(frozen=True)
class FeatureConfig:
    """Every setting that changes the features; stored with each model so detection matches training."""

    sample_rate: int = SAMPLE_RATE
    n_fft: int = 512
    win_length: int = 400  # 25 ms at 16 kHz
    hop_length: int = 160  # 10 ms at 16 kHz
    n_mels: int = 80
    fmin: float = 20.0
    fmax: float = 8000.0
    log_eps: float = 1e-6
    top_db: float | None = None  # clamp each example's log-mel to (max - top_db dB); None keeps all
    center: bool = True
    pad_mode: str = "constant"  # librosa >= 0.10 default
    n_lfcc: int = 20
    n_linear: int = 70  # linear triangular filters under the LFCC
    lfcc_deltas: bool = True  # append delta and delta-delta coefficients (ASVspoof baseline)
    kind: str = "logmel"  # detector front end: one of KINDS (configs saved before this field load as logmel)
    n_linear_bins: int | None = None  # "linear": None keeps all n_fft // 2 + 1 bins, else pooled to this many
    multires_windows: tuple[int, ...] = (256, 512, 1024)  # "multires": window lengths (n_fft = window)
    multires_bins: int = 128  # "multires": bins of the common 0 .. sample_rate/2 grid per window
    cqt_fmin: float = 50.0  # "cqt": centre of the lowest bin (Hz)
    cqt_bins_per_octave: int = 12  # "cqt": Q = 1 / (2 ** (1 / bins_per_octave) - 1)
    cmvn: bool = True  # the model normalises mean/variance per bin over each utterance (False: raw features)

    def __post_init__(self) -> None:
        object.__setattr__(self, "multires_windows", tuple(int(w) for w in self.multires_windows))
        if self.kind not in KINDS:
            raise ValueError(f"feature kind {self.kind!r} unknown; use one of {', '.join(KINDS)}")
        if self.n_linear_bins is not None and not 1 <= self.n_linear_bins <= self.n_fft // 2 + 1:
            raise ValueError(f"n_linear_bins={self.n_linear_bins} must be in 1..{self.n_fft // 2 + 1} (n_fft // 2 + 1) "
                             "or None for all bins")
        if not 0 < self.cqt_fmin < 0.5 * self.fmax or self.cqt_bins_per_octave < 1:
            raise ValueError(f"cqt_fmin={self.cqt_fmin} must be in (0, fmax/2) and cqt_bins_per_octave >= 1")
        if not self.multires_windows or min(self.multires_windows) < 16 or self.multires_bins < 1:
            raise ValueError(f"multires_windows {self.multires_windows} need lengths >= 16 and multires_bins >= 1")
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length={self.win_length} exceeds n_fft={self.n_fft}; "
                             "raise n_fft or shorten the window")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ValueError(f"need 0 <= fmin < fmax <= sample_rate/2, got fmin={self.fmin}, fmax={self.fmax}, "
                             f"sample_rate={self.sample_rate}")
        if self.n_lfcc > self.n_linear:
            raise ValueError(f"n_lfcc={self.n_lfcc} exceeds n_linear={self.n_linear}; keep n_lfcc <= n_linear")
        if min(self.hop_length, self.n_mels, self.n_lfcc, self.log_eps) <= 0:
            raise ValueError("hop_length, n_mels, n_lfcc and log_eps must be positive")

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as a plain JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | str) -> FeatureConfig:
        """Rebuild a config, refusing keys this version does not know; a name from PRESETS gives its settings."""
        if isinstance(data, str):
            if data not in PRESETS:
                raise ValueError(f"front end {data!r} unknown; use one of {', '.join(PRESETS)} or a dict of settings")
            data = PRESETS[data]
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown feature settings {unknown}; known are {sorted(known)} "
                             "(was the model saved by a newer voicelib?)")
        return cls(**data)


def n_bins(cfg: FeatureConfig) -> int:
    """Frequency bins per frame of `frontend(cfg)`."""
    if cfg.kind in ("logmel", "whisper"):
        return cfg.n_mels
    if cfg.kind == "linear":
        return cfg.n_linear_bins or cfg.n_fft // 2 + 1
    if cfg.kind == "lfcc":
        return cfg.n_lfcc * (3 if cfg.lfcc_deltas else 1)
    if cfg.kind == "cqt":
        return len(cqt_frequencies(cfg))
    return len(cfg.multires_windows) * cfg.multires_bins


def frontend(cfg: FeatureConfig | None = None) -> nn.Module:
    """The front-end module `cfg.kind` names: waves [B, T] -> features [B, n_bins(cfg), frames]."""
    cfg = cfg or FeatureConfig()
    kinds = {"logmel": LogMel, "linear": LinearSpectrogram, "lfcc": LFCC, "multires": MultiResolution, "cqt": ConstantQ,
             "whisper": WhisperLogMel}
    return kinds[cfg.kind](cfg)


def n_frames(n_samples: int, cfg: FeatureConfig) -> int:
    """Number of feature frames produced for `n_samples` samples."""
    if cfg.kind == "whisper":
        return n_samples // cfg.hop_length  # Whisper drops the last STFT frame
    if cfg.center:
        return 1 + n_samples // cfg.hop_length
    return max(0, 1 + (n_samples - cfg.n_fft) // cfg.hop_length)


def linear_filterbank(cfg: FeatureConfig) -> np.ndarray:
    """Triangular filters evenly spaced in Hz between fmin and fmax: [n_linear, n_fft // 2 + 1]."""
    freqs = np.linspace(0.0, cfg.sample_rate / 2, cfg.n_fft // 2 + 1)
    edges = np.linspace(cfg.fmin, cfg.fmax, cfg.n_linear + 2)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs - lower) / (centre - lower)
    falling = (upper - freqs) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


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
        mel = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin,
                                  fmax=cfg.fmax, htk=False, norm="slaney")
        self.register_buffer("mel_fb", torch.from_numpy(mel.astype(np.float32)), persistent=False)

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


def bin_pooling(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] matrix mapping linear bins 0..Nyquist onto `n_out` equal bins (overlap-weighted means)."""
    edges_in = (np.arange(n_in + 1) - 0.5) / (n_in - 1)  # bin k covers (k +- 0.5) / (n_in - 1) of Nyquist
    edges_out = np.linspace(edges_in[0], edges_in[-1], n_out + 1)
    lo = np.maximum(edges_out[:-1, None], edges_in[None, :-1])
    hi = np.minimum(edges_out[1:, None], edges_in[None, 1:])
    overlap = np.maximum(hi - lo, 0.0)
    return (overlap / overlap.sum(axis=1, keepdims=True)).astype(np.float32)


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


def cqt_frequencies(cfg: FeatureConfig) -> np.ndarray:
    """Centre frequencies of the CQT bins: cqt_fmin * 2 ** (k / bins_per_octave) up to 0.95 * min(fmax, Nyquist)."""
    top = 0.95 * min(cfg.fmax, cfg.sample_rate / 2)
    n = int(np.floor(cfg.cqt_bins_per_octave * np.log2(top / cfg.cqt_fmin))) + 1
    return cfg.cqt_fmin * 2.0 ** (np.arange(n) / cfg.cqt_bins_per_octave)


def cqt_kernel(cfg: FeatureConfig) -> tuple[np.ndarray, int]:
    """Brown-Puckette spectral kernel [n_bins, n_fft // 2 + 1] (complex) and its n_fft."""
    freqs = cqt_frequencies(cfg)
    q = 1.0 / (2.0 ** (1.0 / cfg.cqt_bins_per_octave) - 1.0)
    lengths = np.ceil(q * cfg.sample_rate / freqs).astype(int)
    n_fft = int(2 ** np.ceil(np.log2(lengths.max())))
    kernel = np.zeros((len(freqs), n_fft), dtype=np.complex128)
    for k, (f, n) in enumerate(zip(freqs, lengths)):
        t = np.arange(n) - (n - 1) / 2  # centred, so every bin is aligned with the frame centre
        start = (n_fft - n) // 2
        kernel[k, start:start + n] = np.hanning(n) * np.exp(2j * np.pi * f * t / cfg.sample_rate) / n
    return (np.conj(np.fft.fft(kernel, axis=1)) / n_fft)[:, : n_fft // 2 + 1], n_fft


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
        dct = scipy.fft.dct(np.eye(cfg.n_linear), type=2, norm="ortho", axis=0)[: cfg.n_lfcc]
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
