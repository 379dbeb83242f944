"""Front-end settings and their matrices, and the front ends in numpy: everything here is importable without torch.

`FeatureConfig.kind` picks the detector's input: "logmel" (80 mel bands, the default), "linear" (full-band
linear-frequency log power spectrogram), "lfcc" (cepstra of a linear filterbank, as the ASVspoof baseline),
"multires" (log power spectrograms at several window lengths, each resampled onto one linear bin grid and
concatenated along frequency), "cqt" (log constant-Q power: Brown and Puckette's spectral-kernel CQT, one
STFT as long as the longest kernel times a fixed kernel matrix; always centred) or "whisper" (Whisper's own
log-mel, for its encoder). Muller et al. 2022 found linear and CQT front ends generalise better to unseen
attacks than mel. `n_bins(cfg)` says how many bins a front end yields; `cfg.cmvn` says whether the model
normalises each utterance per bin (model.normalize_features) before the network.

Two implementations of each front end: the torch modules of `voicelib.audio.frontends` (training, torch and GPU
detection; `frontend(cfg)` builds one, and their names can be read from this module too) and `NumpyFrontEnd`
(ONNX detection, equal to float32 rounding). The mel filterbank is computed here exactly as librosa's (Slaney
scale and area normalisation), without importing librosa: its import pulls numba, a second of start-up.
"""
from __future__ import annotations

import dataclasses
import importlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from voicelib.config import SAMPLE_RATE

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)

KINDS = ("logmel", "linear", "lfcc", "multires", "cqt", "whisper")  # whisper: Whisper's own log-mel (its encoder)
NUMPY_KINDS = tuple(k for k in KINDS if k != "whisper")  # what NumpyFrontEnd computes (Whisper's is torch only)
# front ends by name (FeatureConfig.from_dict("linear80")): each kind with its defaults, and linear80 -- the
# linear bins pooled onto 80 equal-width bands, a linear front end at the network cost of 80 mel bands
PRESETS: dict[str, dict[str, Any]] = {**{kind: {"kind": kind} for kind in KINDS},
                                      "linear80": {"kind": "linear", "n_linear_bins": 80},
                                      "whisper": {"kind": "whisper", "n_fft": 400, "hop_length": 160, "n_mels": 80}}
# the torch modules and helpers of voicelib.audio.frontends, readable here as before they moved there
TORCH_NAMES = ("LogMel", "LinearSpectrogram", "LFCC", "MultiResolution", "ConstantQ", "WhisperLogMel", "deltas")


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

def _torch_front_ends():
    """voicelib.audio.frontends, imported by name on first use: torch costs ONNX detection 1.3 s and 200 MB."""
    return importlib.import_module("voicelib.audio.frontends")


def __getattr__(name: str) -> Any:
    """The torch front-end classes (features.LogMel, ...), loaded with torch only when asked for."""
    if name in TORCH_NAMES:
        return getattr(_torch_front_ends(), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def frontend(cfg: FeatureConfig | None = None) -> nn.Module:
    """The torch front-end module `cfg.kind` names: waves [B, T] -> features [B, n_bins(cfg), frames]."""
    return _torch_front_ends().frontend(cfg)


def log_mel(wave: np.ndarray, cfg: FeatureConfig | None = None) -> np.ndarray:
    """Log-mel features of a float wave [T] -> [n_mels, frames] (or batched), computed by the torch module."""
    return _torch_front_ends().log_mel(wave, cfg)


def lfcc(wave: np.ndarray, cfg: FeatureConfig | None = None) -> np.ndarray:
    """LFCC features of a float wave [T] -> [n_bins, frames] (or batched), computed by the torch module."""
    return _torch_front_ends().lfcc(wave, cfg)


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

# Slaney's mel scale (librosa's default, htk=False): linear below 1 kHz, logarithmic above; librosa's constants
_F_SP, _MIN_LOG_HZ = 200.0 / 3, 1000.0
_MIN_LOG_MEL, _LOGSTEP = (_MIN_LOG_HZ - 0.0) / _F_SP, np.log(6.4) / 27.0


def hz_to_mel(hz: float) -> float:
    """One frequency on Slaney's mel scale."""
    if hz >= _MIN_LOG_HZ:
        return _MIN_LOG_MEL + float(np.log(hz / _MIN_LOG_HZ)) / _LOGSTEP
    return (hz - 0.0) / _F_SP


def mel_to_hz(mels: np.ndarray) -> np.ndarray:
    """Frequencies (Hz) of points on Slaney's mel scale."""
    freqs = 0.0 + _F_SP * np.asarray(mels, dtype=np.float64)
    high = mels >= _MIN_LOG_MEL
    freqs[high] = _MIN_LOG_HZ * np.exp(_LOGSTEP * (mels[high] - _MIN_LOG_MEL))
    return freqs


def mel_filterbank(cfg: FeatureConfig) -> np.ndarray:
    """Slaney-normalised triangular mel filters [n_mels, n_fft // 2 + 1]: librosa.filters.mel(htk=False, norm="slaney").

    The arithmetic follows librosa's step by step (float64 ramps cast to float32, then scaled by the band
    widths), so the float32 values are the same, not merely close.
    """
    fft_freqs = np.fft.rfftfreq(n=cfg.n_fft, d=1.0 / cfg.sample_rate)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(cfg.fmin), hz_to_mel(cfg.fmax), cfg.n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    lower, upper = -ramps[:-2] / fdiff[:-1, None], ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper)).astype(np.float32)
    weights *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]
    return weights


def dct_matrix(n: int) -> np.ndarray:
    """The orthonormal DCT-II matrix [n, n], a row per coefficient: scipy.fft.dct(np.eye(n), norm="ortho", axis=0)."""
    k, j = np.arange(n)[:, None], np.arange(n)[None, :]
    scale = np.where(k == 0, np.sqrt(1.0 / n), np.sqrt(2.0 / n))
    return scale * np.cos(np.pi * k * (2 * j + 1) / (2 * n))


def bin_pooling(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] matrix mapping linear bins 0..Nyquist onto `n_out` equal bins (overlap-weighted means)."""
    edges_in = (np.arange(n_in + 1) - 0.5) / (n_in - 1)  # bin k covers (k +- 0.5) / (n_in - 1) of Nyquist
    edges_out = np.linspace(edges_in[0], edges_in[-1], n_out + 1)
    lo = np.maximum(edges_out[:-1, None], edges_in[None, :-1])
    hi = np.minimum(edges_out[1:, None], edges_in[None, 1:])
    overlap = np.maximum(hi - lo, 0.0)
    return (overlap / overlap.sum(axis=1, keepdims=True)).astype(np.float32)


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


def hann(length: int) -> np.ndarray:
    """The periodic Hann window, as torch.hann_window(length, periodic=True)."""
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / length)).astype(np.float32)


def stft_frames(waves: np.ndarray, n_fft: int, hop_length: int, window: np.ndarray, *, center: bool,
                pad_mode: str) -> np.ndarray:
    """Windowed frames [B, frames, len(window)] of waves [B, T], the frames torch.stft transforms.

    torch centres a shorter window inside n_fft with zeros; those zeros are left out here, so `np.fft.rfft(frames,
    n=n_fft)` has torch's power in every bin (and torch's complex values when the window fills n_fft).
    """
    if center:
        waves = np.pad(waves, ((0, 0), (n_fft // 2, n_fft // 2)), mode=pad_mode)
    count = 1 + (waves.shape[-1] - n_fft) // hop_length
    left = (n_fft - window.size) // 2
    return sliding_window_view(waves, window.size, axis=-1)[:, left::hop_length][:, :count] * window


def _deltas(coeffs: np.ndarray, width: int = 2) -> np.ndarray:
    """Regression deltas over frames (last axis) with edge replication, as frontends.deltas."""
    frames = coeffs.shape[-1]
    padded = np.pad(coeffs, [(0, 0)] * (coeffs.ndim - 1) + [(width, width)], mode="edge")
    num = sum(n * (padded[..., width + n:width + n + frames] - padded[..., width - n:width - n + frames])
              for n in range(1, width + 1))
    return num / (2 * sum(n * n for n in range(1, width + 1)))


class NumpyFrontEnd:
    """The front end `cfg.kind` names, in numpy: float waves [B, T] (or [T]) -> float32 [B, n_bins(cfg), frames].

    Equal to the torch module (`frontend(cfg)`) to float32 rounding; ONNX detection uses it so that scoring
    never imports torch. Waves go through in groups of `group`, so the frames and spectra stay a few MB.
    """

    def __init__(self, cfg: FeatureConfig, *, group: int = 8):
        if cfg.kind not in NUMPY_KINDS:
            raise ValueError(f"front end {cfg.kind!r} has no numpy version (only {', '.join(NUMPY_KINDS)}); "
                             "use the torch module, features.frontend(cfg)")
        self.cfg, self.group, self.kernel, self.dct = cfg, group, None, None
        full = cfg.n_fft // 2 + 1
        # one (n_fft, window, filter matrix or None, centred, pad mode) per STFT; matrices transposed for frames @ m
        if cfg.kind == "multires":
            self.stfts = [(max(w, cfg.hop_length), hann(w), bin_pooling(max(w, cfg.hop_length) // 2 + 1,
                                                                        cfg.multires_bins).T, cfg.center, cfg.pad_mode)
                          for w in cfg.multires_windows]
        elif cfg.kind == "cqt":  # a rectangular window as long as the longest kernel, always centred with zeros
            kernel, n_fft = cqt_kernel(cfg)
            self.kernel = np.ascontiguousarray(kernel.astype(np.complex64).T)
            self.stfts = [(n_fft, np.ones(n_fft, np.float32), None, True, "constant")]
        else:
            matrix = {"logmel": mel_filterbank, "lfcc": linear_filterbank}.get(cfg.kind)
            matrix = (matrix(cfg) if matrix else None if cfg.n_linear_bins in (None, full)
                      else bin_pooling(full, cfg.n_linear_bins))
            self.stfts = [(cfg.n_fft, hann(cfg.win_length), None if matrix is None else np.ascontiguousarray(matrix.T),
                           cfg.center, cfg.pad_mode)]
        if cfg.kind == "lfcc":
            self.dct = dct_matrix(cfg.n_linear)[: cfg.n_lfcc].astype(np.float32)

    def __call__(self, waves: np.ndarray) -> np.ndarray:
        """Features of a batch of waves (a single wave [T] gives [n_bins, frames])."""
        batch = np.asarray(waves, dtype=np.float32)
        if batch.ndim not in (1, 2):
            raise ValueError(f"expected waves shaped [T] or [B, T], got {batch.shape}")
        if batch.shape[-1] == 0:
            raise ValueError("cannot compute features of an empty wave; check the audio was loaded")
        single = batch.ndim == 1
        batch = batch[None] if single else batch
        out = np.concatenate([self._features(batch[i:i + self.group]) for i in range(0, len(batch), self.group)])
        return out[0] if single else out

    def _features(self, batch: np.ndarray) -> np.ndarray:
        """Features of a few waves [b, T] -> [b, bins, frames]."""
        cfg = self.cfg
        parts = []
        for n_fft, window, matrix, center, pad_mode in self.stfts:
            spec = np.fft.rfft(stft_frames(batch, n_fft, cfg.hop_length, window, center=center, pad_mode=pad_mode),
                               n=n_fft, axis=-1)
            if self.kernel is not None:
                spec = spec @ self.kernel
            power = np.square(spec.real) + np.square(spec.imag)
            parts.append(np.log((power if matrix is None else power @ matrix) + np.float32(cfg.log_eps)))
        out = np.concatenate(parts, axis=-1).transpose(0, 2, 1)
        if self.dct is not None:
            out = self.dct @ out
            if cfg.lfcc_deltas:
                first = _deltas(out)
                out = np.concatenate([out, first, _deltas(first)], axis=-2)
            return np.ascontiguousarray(out, dtype=np.float32)
        if cfg.top_db is not None:  # each example clamped to its max - top_db dB (natural log of power)
            out = np.maximum(out, out.max(axis=(-2, -1), keepdims=True) - np.float32(cfg.top_db * np.log(10.0) / 10.0))
        return np.ascontiguousarray(out, dtype=np.float32)
