"""Wave-level augmentations `(wave, sr, rng) -> wave`, SpecAugment masks, and their composition.

Every transform is applied to human and AI clips alike: a cue that only one class carries (a codec,
narrow band, reverberation, silence made of exact zeros) would become a shortcut for the detector.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from scipy import signal
from tqdm.auto import tqdm

from voicelib import audio
from voicelib.io import file_hash, write_json

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


def codec(wave: np.ndarray, sr: int, rng: np.random.Generator, *, formats: tuple[str, ...] = ("mp3", "ogg", "opus"),
          compression: tuple[float, float] = (0.0, 0.9)) -> np.ndarray:
    """Round-trip through MP3, Ogg Vorbis or Opus at a random bitrate (compression level 0=best .. 0.9)."""
    fmt = str(rng.choice(formats))
    level = float(rng.uniform(*compression))
    data = audio.encode_bytes(wave, sr, format=fmt, compression_level=level)
    out = audio.decode_bytes(data, sr=sr, name=f"<{fmt} round trip>")
    return _fit_length(out.astype(np.float32), len(wave))


def telephone(wave: np.ndarray, sr: int, rng: np.random.Generator, *, band: tuple[float, float] = (300.0, 3400.0),
              resample_8k: float = 0.5) -> np.ndarray:
    """Band-limit to the telephone band (and with probability `resample_8k` go through 8 kHz and back)."""
    x = np.asarray(wave, dtype=np.float32)
    if resample_8k > 0 and rng.random() < resample_8k and sr > 8000:
        x = _fit_length(audio.resample(audio.resample(x, sr, 8000), 8000, sr), len(wave))
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
    codecs: tuple[str, ...] = ("mp3", "ogg", "opus")
    spec_augment: bool = True

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
                         "reverb": {"rt60": c.rt60}, "codec": {"formats": c.codecs}}

    def apply(self, wave: np.ndarray, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
        """Return the augmented wave and the names of the transforms applied."""
        applied = []
        for name, fn in TRANSFORMS.items():
            if rng.random() < getattr(self.config, f"p_{name}"):
                wave = fn(wave, sr, rng, **self._options.get(name, {}))
                applied.append(name)
        return np.asarray(wave, dtype=np.float32), applied

    def __call__(self, wave: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
        return self.apply(wave, sr, rng)[0]


def _clip_rng(seed: int, key: object, k: int) -> np.random.Generator:
    """A generator that depends only on the seed, the clip (its hash) and the variant number."""
    digest = int(hashlib.sha256(str(key).encode()).hexdigest()[:15], 16)
    return np.random.default_rng([seed, digest, k])


def examples(manifest: pd.DataFrame, out_dir: str | Path, *, config: AugmentConfig | None = None, n: int = 4,
             seed: int = 0, sr: int = 16000, seconds: float = 4.0) -> pd.DataFrame:
    """Write before/after WAV pairs for `n` clips per class to out_dir/examples; return what was applied."""
    out_dir = Path(out_dir)
    aug = Augmenter(config)
    pool = manifest[manifest["split"] == "train"] if "split" in manifest else manifest
    rows = []
    for label, group in pool.groupby("label", sort=True):
        for i, row in enumerate(group.sample(n=min(n, len(group)), random_state=seed).itertuples()):
            rng = _clip_rng(seed, row.hash, 0)
            wave = random_crop(audio.load(row.path, sr=sr), sr, rng, seconds=min(seconds, row.duration))
            after, applied = aug.apply(wave, sr, rng)
            while not applied and any(getattr(aug.config, f"p_{k}") > 0 for k in TRANSFORMS):
                after, applied = aug.apply(wave, sr, rng)  # an example that shows nothing is useless
            before_path = audio.save(out_dir / "examples" / f"{label}_{i}_before.wav", wave, sr)
            after_path = audio.save(out_dir / "examples" / f"{label}_{i}_after.wav", after, sr)
            rows.append({"label": label, "source_path": row.path, "before": str(before_path),
                         "after": str(after_path), "transforms": ",".join(applied)})
    table = pd.DataFrame(rows)
    write_json(out_dir / "augment.json", {"config": aug.config.to_dict(), "seed": seed,
                                          "examples": table.to_dict(orient="records")})
    return table


def materialise(manifest: pd.DataFrame, out_dir: str | Path, *, config: AugmentConfig | None = None,
                n_variants: int = 1, seed: int = 0, sr: int = 16000, splits: tuple[str, ...] = ("train",)) -> pd.DataFrame:
    """Write `n_variants` augmented copies of each clip in `splits`; return their manifest rows.

    Variants keep the parent's split, speaker and group (so splits stay leak-free) and carry
    source 'augment' and the parent's hash. Existing variant files are reused, so reruns resume.
    """
    out_dir = Path(out_dir)
    aug = Augmenter(config)
    pool = manifest[manifest["split"].isin(splits)] if "split" in manifest else manifest
    rows = []
    for row in tqdm(list(pool.itertuples(index=False)), desc="augment", disable=n_variants == 0):
        wave = None
        for k in range(n_variants):
            path = out_dir / str(row.label) / f"{row.hash}_aug{k}.flac"
            applied: list[str] = []
            if not path.exists():
                wave = audio.load(row.path, sr=sr) if wave is None else wave
                after, applied = aug.apply(wave, sr, _clip_rng(seed, row.hash, k + 1))
                audio.save(path, after, sr)
            new = {**row._asdict(), "path": str(path), "source": "augment", "parent_hash": row.hash,
                   "hash": file_hash(path), "duration": audio.info(path).duration, "augment": ",".join(applied)}
            rows.append(new)
    logger.info("materialised %d augmented variants of %d clips into %s", len(rows), len(pool), out_dir)
    return pd.DataFrame(rows, columns=list(pool.columns) + ["parent_hash", "augment"]) if not rows else pd.DataFrame(rows)


def read_config(path: str | Path) -> AugmentConfig:
    """The AugmentConfig stage 02 wrote into augment.json."""
    from voicelib.io import read_json

    return AugmentConfig.from_dict(read_json(path)["config"])
