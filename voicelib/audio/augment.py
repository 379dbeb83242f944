"""Wave-level augmentations `(wave, sr, rng) -> wave`, SpecAugment masks, and their composition.

Every transform is applied to human and AI clips alike: a cue that only one class carries (a codec,
narrow band, reverberation, silence made of exact zeros) would become a shortcut for the detector.
The channel transforms for unseen channels (RawBoost, Tak et al. 2022: linear/non-linear convolutive noise,
impulsive signal-dependent noise, stationary coloured noise; and random band-limiting) default to
probability 0 and draw no random numbers then, so existing configs give bit-identical output.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np
from scipy import signal

from voicelib.audio import decode, dsp
from voicelib.files import read_json

logger = logging.getLogger(__name__)

Transform = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


def _rms(wave: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(wave, dtype=np.float64)))) if len(wave) else 0.0


def _fit_length(wave: np.ndarray, length: int) -> np.ndarray:
    """Crop centrally or tile `wave` to exactly `length` samples (tiling adds no exact-zero padding)."""
    if len(wave) >= length:
        start = (len(wave) - length) // 2
        return wave[start:start + length]
    reps = int(np.ceil(length / max(len(wave), 1)))
    return np.tile(wave, reps)[:length]


def coloured_noise(n: int, rng: np.random.Generator, *, color: str = "white") -> np.ndarray:
    """Unit-RMS white, pink (1/f) or brown (1/f^2) noise of `n` samples."""
    exponents = {"white": 0.0, "pink": 0.5, "brown": 1.0}
    if color not in exponents:
        raise ValueError(f"noise color {color!r} unknown; use one of {', '.join(exponents)}")
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n)
    freqs[0] = freqs[1] if n > 1 else 1.0
    noise = np.fft.irfft(spectrum / freqs ** exponents[color], n)
    return (noise / (_rms(noise) + 1e-12)).astype(np.float32)


def add_noise(wave: np.ndarray, sr: int, rng: np.random.Generator, *, snr_db: tuple[float, float] = (5.0, 40.0),
              colors: tuple[str, ...] = ("white", "pink", "brown")) -> np.ndarray:
    """Add white/pink/brown noise at an SNR drawn uniformly from `snr_db`."""
    snr = rng.uniform(*snr_db)
    noise = coloured_noise(len(wave), rng, color=str(rng.choice(colors)))
    level = _rms(wave) / 10.0 ** (snr / 20.0)
    return (wave + noise * level).astype(np.float32)


def noise_floor(wave: np.ndarray, sr: int, rng: np.random.Generator, *,
                level_dbfs: tuple[float, float] = (-85.0, -65.0)) -> np.ndarray:
    """Add a faint white noise floor so runs of exact digital zero (a source cue) disappear."""
    level = 10.0 ** (rng.uniform(*level_dbfs) / 20.0)
    return (wave + rng.standard_normal(len(wave)).astype(np.float32) * np.float32(level)).astype(np.float32)


def gain(wave: np.ndarray, sr: int, rng: np.random.Generator, *, db: tuple[float, float] = (-12.0, 6.0)) -> np.ndarray:
    """Scale by a random gain in dB, lowered where needed so the peak stays below 0.99 (no clipping cue)."""
    g = 10.0 ** (rng.uniform(*db) / 20.0)
    peak = float(np.max(np.abs(wave))) if len(wave) else 0.0
    if peak * g > 0.99:
        g = 0.99 / peak
    return (wave * np.float32(g)).astype(np.float32)


def time_stretch(wave: np.ndarray, sr: int, rng: np.random.Generator, *, rate: tuple[float, float] = (0.85, 1.15),
                 keep_length: bool = False) -> np.ndarray:
    """Change tempo by a random rate (phase vocoder, pitch kept); duration becomes len/rate unless keep_length."""
    import librosa

    r = float(rng.uniform(*rate))
    out = librosa.effects.time_stretch(np.asarray(wave, dtype=np.float32), rate=r).astype(np.float32)
    return _fit_length(out, len(wave)) if keep_length else out


def pitch_shift(wave: np.ndarray, sr: int, rng: np.random.Generator, *,
                semitones: tuple[float, float] = (-2.0, 2.0)) -> np.ndarray:
    """Shift pitch by a random number of semitones, keeping the length (stretch + soxr resample)."""
    import librosa

    steps = float(rng.uniform(*semitones))
    out = librosa.effects.pitch_shift(np.asarray(wave, dtype=np.float32), sr=sr, n_steps=steps, res_type="soxr_hq")
    return _fit_length(out.astype(np.float32), len(wave))


def mulaw(wave: np.ndarray, sr: int, *, bits: int = 8, rate: int = 8000) -> np.ndarray:
    """G.711-style telephone codec: resample to 8 kHz, mu-law companded 8-bit quantisation, back to `sr`."""
    x = np.clip(dsp.resample(np.asarray(wave, dtype=np.float32), sr, rate), -1.0, 1.0).astype(np.float64)
    mu = 2 ** bits - 1
    companded = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    quantised = np.round((companded + 1) / 2 * mu) / mu * 2 - 1
    decoded = np.sign(quantised) * np.expm1(np.abs(quantised) * np.log1p(mu)) / mu
    return _fit_length(dsp.resample(decoded.astype(np.float32), rate, sr), len(wave))


def codec(wave: np.ndarray, sr: int, rng: np.random.Generator, *, formats: tuple[str, ...] = ("mp3", "ogg", "opus"),
          compression: tuple[float, float] = (0.0, 0.9), bitrates_kbps: tuple[int, ...] = ()) -> np.ndarray:
    """Round-trip through MP3, Ogg Vorbis, Opus (compression level 0=best .. 0.9) or 8 kHz mu-law ("mulaw").

    With `bitrates_kbps`, MP3 is encoded at a constant bitrate drawn from that list instead.
    """
    fmt = str(rng.choice(formats))
    level = float(rng.uniform(*compression))
    if fmt == "mulaw":
        return mulaw(wave, sr)
    if fmt == "mp3" and bitrates_kbps:
        data = decode.encode_bytes(wave, sr, format=fmt, bitrate_kbps=int(rng.choice(bitrates_kbps)))
    else:
        data = decode.encode_bytes(wave, sr, format=fmt, compression_level=level)
    out = decode.decode_bytes(data, sr=sr, name=f"<{fmt} round trip>")
    return _fit_length(out.astype(np.float32), len(wave))


def telephone(wave: np.ndarray, sr: int, rng: np.random.Generator, *, band: tuple[float, float] = (300.0, 3400.0),
              resample_8k: float = 0.5) -> np.ndarray:
    """Band-limit to the telephone band (and with probability `resample_8k` go through 8 kHz and back)."""
    x = np.asarray(wave, dtype=np.float32)
    if resample_8k > 0 and rng.random() < resample_8k and sr > 8000:
        x = _fit_length(dsp.resample(dsp.resample(x, sr, 8000), 8000, sr), len(wave))
    high = min(band[1], 0.45 * sr)
    sos = signal.butter(8, [band[0], high], btype="bandpass", fs=sr, output="sos")
    return signal.sosfiltfilt(sos, x).astype(np.float32)


def reverb(wave: np.ndarray, sr: int, rng: np.random.Generator, *, rt60: tuple[float, float] = (0.15, 0.8),
           wet: tuple[float, float] = (0.2, 0.8)) -> np.ndarray:
    """Convolve with a synthetic exponentially decaying noise impulse response (random RT60), level kept."""
    t60 = float(rng.uniform(*rt60))
    t = np.arange(int(t60 * sr)) / sr
    tail = rng.standard_normal(len(t)) * np.exp(-6.9078 * t / t60)  # -60 dB at t60
    tail[0] = 0.0
    ir = tail / (np.sqrt(np.sum(tail ** 2)) + 1e-12) * float(rng.uniform(*wet))
    ir[0] = 1.0
    out = signal.fftconvolve(wave, ir)[: len(wave)]
    return (out * (_rms(wave) / (_rms(out) + 1e-12))).astype(np.float32)


def _keep_level(out: np.ndarray, wave: np.ndarray) -> np.ndarray:
    """Scale `out` to the RMS of `wave` (the level is no cue; loudness is normalised later anyway)."""
    out = out - np.mean(out)
    return (out * (_rms(wave) / (_rms(out) + 1e-12))).astype(np.float32)


def notch_filter(rng: np.random.Generator, sr: int, *, n_bands: int = 5, freq: tuple[float, float] = (20.0, 8000.0),
                 bandwidth: tuple[float, float] = (100.0, 1000.0), taps: tuple[int, int] = (10, 100)) -> np.ndarray:
    """RawBoost's random FIR: a cascade of `n_bands` random band-pass filters, peak gain 1 (genNotchCoeffs)."""
    b = np.ones(1)
    for _ in range(n_bands):
        fc, bw = rng.uniform(*freq), rng.uniform(*bandwidth)
        c = int(rng.integers(taps[0], taps[1] + 1)) | 1  # odd length: a linear-phase band-pass
        f1, f2 = max(fc - bw / 2, 1e-3), min(fc + bw / 2, sr / 2 - 1e-3)
        if f2 <= f1:
            f1 = max(f2 - bw, 1e-3)
        b = np.convolve(signal.firwin(c, [f1, f2], window="hamming", fs=sr, pass_zero=False), b)
    _, h = signal.freqz(b, 1, fs=sr)
    return b / np.max(np.abs(h))


def zero_phase_fir(x: np.ndarray, b: np.ndarray) -> np.ndarray:
    """filtfilt(b, 1, x) by FFT: convolve with b and its reverse, centred (edges zero-padded, not reflected)."""
    return signal.oaconvolve(x, np.convolve(b, b[::-1]), mode="same")


def rawboost_convolutive(wave: np.ndarray, sr: int, rng: np.random.Generator, *, orders: int = 5,
                         n_bands: int = 5) -> np.ndarray:
    """RawBoost 1, linear and non-linear convolutive noise: sum of random filters of x, x^2, ..., x^orders."""
    x = np.asarray(wave, dtype=np.float64)
    y = np.zeros_like(x)
    for j in range(orders):
        gain_db = 0.0 if j == 0 else -rng.uniform(5.0, 20.0)  # higher orders weaker, as RawBoost's bias
        y += 10 ** (gain_db / 20) * zero_phase_fir(x ** (j + 1), notch_filter(rng, sr, n_bands=n_bands))
    return _keep_level(y, wave)


def rawboost_impulsive(wave: np.ndarray, sr: int, rng: np.random.Generator, *, max_percent: float = 10.0,
                       gain: float = 2.0) -> np.ndarray:
    """RawBoost 2, impulsive signal-dependent noise: up to `max_percent` % of samples get x * gain * u1 * u2."""
    x = np.asarray(wave, dtype=np.float32)
    n = int(len(x) * rng.uniform(0.0, max_percent) / 100)
    where = rng.permutation(len(x))[:n]
    factor = (2 * rng.random(n) - 1) * (2 * rng.random(n) - 1)
    out = x.copy()
    out[where] = x[where] + gain * x[where] * factor.astype(np.float32)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def rawboost_coloured(wave: np.ndarray, sr: int, rng: np.random.Generator, *,
                      snr_db: tuple[float, float] = (10.0, 40.0), n_bands: int = 5) -> np.ndarray:
    """RawBoost 3, stationary signal-independent noise: white noise through a random filter at a random SNR."""
    noise = signal.lfilter(notch_filter(rng, sr, n_bands=n_bands), 1.0, rng.standard_normal(len(wave)))
    level = _rms(wave) / 10.0 ** (rng.uniform(*snr_db) / 20.0)
    return (wave + noise / (_rms(noise) + 1e-12) * level).astype(np.float32)


def band_limit(wave: np.ndarray, sr: int, rng: np.random.Generator, *,
               lowpass_hz: tuple[float, float] = (3000.0, 7000.0),
               highpass_hz: tuple[float, float] = (50.0, 500.0)) -> np.ndarray:
    """A random low-pass, high-pass or both (4th-order Butterworth, zero phase), like unknown microphones and links."""
    mode = str(rng.choice(["low", "high", "both"]))
    x = np.asarray(wave, dtype=np.float32)
    if mode in ("low", "both"):
        cut = min(rng.uniform(*lowpass_hz), 0.45 * sr)
        x = signal.sosfiltfilt(signal.butter(4, cut, btype="lowpass", fs=sr, output="sos"), x)
    if mode in ("high", "both"):
        x = signal.sosfiltfilt(signal.butter(4, rng.uniform(*highpass_hz), btype="highpass", fs=sr, output="sos"), x)
    return np.asarray(x, dtype=np.float32)


def random_crop(wave: np.ndarray, sr: int, rng: np.random.Generator, *, seconds: float = 3.0) -> np.ndarray:
    """A random window of `seconds`; shorter clips are tiled from a random offset (never zero-padded)."""
    length = int(round(seconds * sr))
    if len(wave) > length:
        start = int(rng.integers(0, len(wave) - length + 1))
        return np.asarray(wave[start:start + length], dtype=np.float32)
    offset = int(rng.integers(0, max(len(wave), 1)))
    return _fit_length(np.roll(np.asarray(wave, dtype=np.float32), -offset), length)


def spec_augment(features, generator=None, *, time_masks: int = 2, max_time: float = 0.1,
                 freq_masks: int = 2, max_freq: int = 8):
    """SpecAugment time and frequency masks on [B, n_mels, frames] (torch), filled with each example's mean."""
    import torch

    x = features if features.dim() == 3 else features.unsqueeze(0)
    b, n_mels, frames = x.shape
    fill = x.mean(dim=(1, 2), keepdim=True)
    mask = torch.zeros_like(x, dtype=torch.bool)
    for count, size, axis_len, dim in ((time_masks, max(int(max_time * frames), 1), frames, 2),
                                       (freq_masks, max_freq, n_mels, 1)):
        pos = torch.arange(axis_len, device=x.device)
        for _ in range(count):
            width = torch.randint(0, size + 1, (b, 1), generator=generator, device=x.device)
            start = (torch.rand((b, 1), generator=generator, device=x.device) * (axis_len - width + 1)).long()
            m = (pos[None] >= start) & (pos[None] < start + width)
            mask |= m[:, None, :] if dim == 2 else m[:, :, None]
    out = torch.where(mask, fill.expand_as(x), x)
    return out if features.dim() == 3 else out[0]


TRANSFORMS: dict[str, Transform] = {
    "noise_floor": noise_floor, "gain": gain, "time_stretch": time_stretch, "pitch_shift": pitch_shift,
    "reverb": reverb, "add_noise": add_noise, "telephone": telephone, "codec": codec,
}
# applied after TRANSFORMS and drawn only when their probability is above 0 (old configs stay bit-identical)
CHANNEL_TRANSFORMS: dict[str, Transform] = {
    "rawboost_convolutive": rawboost_convolutive, "rawboost_impulsive": rawboost_impulsive,
    "rawboost_coloured": rawboost_coloured, "band_limit": band_limit,
}


@dataclasses.dataclass
class AugmentConfig:
    """Probability of each wave transform and its parameter ranges (applied in TRANSFORMS order)."""

    p_noise_floor: float = 0.5
    p_gain: float = 0.5
    p_time_stretch: float = 0.2
    p_pitch_shift: float = 0.2
    p_reverb: float = 0.2
    p_add_noise: float = 0.3
    p_telephone: float = 0.15
    p_codec: float = 0.3
    snr_db: tuple[float, float] = (5.0, 40.0)
    gain_db: tuple[float, float] = (-12.0, 6.0)
    stretch_rate: tuple[float, float] = (0.85, 1.15)
    semitones: tuple[float, float] = (-2.0, 2.0)
    rt60: tuple[float, float] = (0.15, 0.8)
    codecs: tuple[str, ...] = ("mp3", "ogg", "opus")  # "mulaw" adds the 8 kHz G.711-style telephone codec
    spec_augment: bool = True
    p_rawboost_convolutive: float = 0.0
    p_rawboost_impulsive: float = 0.0
    p_rawboost_coloured: float = 0.0
    p_band_limit: float = 0.0
    codec_bitrates_kbps: tuple[int, ...] = ()  # MP3 at one of these constant bitrates; () keeps compression levels
    rawboost_snr_db: tuple[float, float] = (10.0, 40.0)
    lowpass_hz: tuple[float, float] = (3000.0, 7000.0)
    highpass_hz: tuple[float, float] = (50.0, 500.0)

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, list):
                setattr(self, field.name, tuple(value))
            if field.name.startswith("p_") and not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"AugmentConfig.{field.name}={value} must be a probability in [0, 1]")

    @classmethod
    def none(cls) -> "AugmentConfig":
        """No augmentation at all."""
        return cls(**{f.name: 0.0 for f in dataclasses.fields(cls) if f.name.startswith("p_")}, spec_augment=False)

    @classmethod
    def channel_robust(cls, **overrides: Any) -> "AugmentConfig":
        """Today's transforms plus RawBoost, band-limiting and codecs at several bitrates, for unseen channels."""
        preset = {"p_reverb": 0.3, "p_codec": 0.4, "codecs": ("mp3", "ogg", "opus", "mulaw"),
                  "codec_bitrates_kbps": (16, 24, 32, 48, 64, 96, 128), "p_rawboost_convolutive": 0.3,
                  "p_rawboost_impulsive": 0.2, "p_rawboost_coloured": 0.2, "p_band_limit": 0.3}
        return cls(**{**preset, **overrides})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AugmentConfig":
        """Rebuild from `to_dict()` output, refusing unknown keys."""
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"AugmentConfig: unknown keys {sorted(unknown)}; check the spelling")
        return cls(**data)


class Augmenter:
    """Apply a random subset of the wave transforms, the same way whatever the clip's class."""

    def __init__(self, config: AugmentConfig | None = None):
        self.config = config or AugmentConfig()
        c = self.config
        self._options = {"add_noise": {"snr_db": c.snr_db}, "gain": {"db": c.gain_db},
                         "time_stretch": {"rate": c.stretch_rate}, "pitch_shift": {"semitones": c.semitones},
                         "reverb": {"rt60": c.rt60},
                         "codec": {"formats": c.codecs, "bitrates_kbps": c.codec_bitrates_kbps},
                         "rawboost_coloured": {"snr_db": c.rawboost_snr_db},
                         "band_limit": {"lowpass_hz": c.lowpass_hz, "highpass_hz": c.highpass_hz}}

    def apply(self, wave: np.ndarray, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
        """Return the augmented wave and the names of the transforms applied."""
        applied = []
        for name, fn in TRANSFORMS.items():
            if rng.random() < getattr(self.config, f"p_{name}"):
                wave = fn(wave, sr, rng, **self._options.get(name, {}))
                applied.append(name)
        for name, fn in CHANNEL_TRANSFORMS.items():
            p = getattr(self.config, f"p_{name}")
            if p > 0 and rng.random() < p:
                wave = fn(wave, sr, rng, **self._options.get(name, {}))
                applied.append(name)
        return np.asarray(wave, dtype=np.float32), applied

    def __call__(self, wave: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
        return self.apply(wave, sr, rng)[0]


def clip_rng(seed: int, key: object, k: int) -> np.random.Generator:
    """A generator that depends only on the seed, the clip (its hash) and the variant number."""
    digest = int(hashlib.sha256(str(key).encode()).hexdigest()[:15], 16)
    return np.random.default_rng([seed, digest, k])


def read_config(path: str | Path) -> AugmentConfig:
    """The AugmentConfig stage 02 wrote into augment.json."""
    return AugmentConfig.from_dict(read_json(path)["config"])
