"""Signal helpers on decoded waves: mono mixdown, resampling, silence trimming, loudness, sanity checks."""
from __future__ import annotations

import numpy as np
import soxr

from voicelib.errors import AudioError, AudioTooLong

SILENCE_DBFS = -70.0  # a peak below this is treated as silence (16-bit dither sits near -90 dBFS)


MONO_CHANNEL_GAP_DB = 40.0  # a channel this much quieter than the loudest is ignored in the mixdown

_LONG_HINT = ("score it with `python -m voicelib detect` or Detector (they stream any length; "
              "--max-duration/max_duration set a limit), or pass audio.load(..., max_duration=None) to load it whole")


def to_mono(data: np.ndarray) -> np.ndarray:
    """Average channels to mono, ignoring channels more than 40 dB quieter than the loudest."""
    if data.ndim == 1:
        return data
    if data.shape[1] == 1:
        return np.ascontiguousarray(data[:, 0])
    rms = np.sqrt(np.mean(np.square(data, dtype=np.float64), axis=0)) + 1e-12
    keep = 20.0 * np.log10(rms / rms.max()) > -MONO_CHANNEL_GAP_DB
    return (data[:, keep].mean(axis=1, dtype=np.float32) if keep.sum() > 1
            else np.ascontiguousarray(data[:, keep.argmax()]))


def resample(wave: np.ndarray, orig_sr: int, sr: int) -> np.ndarray:
    """Resample a float32 wave with soxr (high quality)."""
    if orig_sr <= 0 or sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} -> {sr}")
    if orig_sr == sr:
        return np.asarray(wave, dtype=np.float32)
    return soxr.resample(np.asarray(wave, dtype=np.float32), orig_sr, sr, quality="HQ")


def _frame_db(wave: np.ndarray, frame: int, hop: int) -> np.ndarray:
    """Return the RMS level (dB) of each frame, computed from a running sum of squares."""
    padded = np.pad(wave.astype(np.float64), (frame // 2, frame // 2))
    cumsum = np.concatenate([[0.0], np.cumsum(padded * padded)])
    starts = np.arange(0, max(len(padded) - frame, 0) + 1, hop)
    power = (cumsum[starts + frame] - cumsum[starts]) / frame
    return 10.0 * np.log10(np.maximum(power, 1e-20))


def trim_silence(wave: np.ndarray, sr: int, *, top_db: float = 40.0, pad: float = 0.05) -> np.ndarray:
    """Cut leading and trailing audio more than `top_db` below the loudest frame, keeping `pad` seconds."""
    frame, hop = max(int(0.025 * sr), 1), max(int(0.010 * sr), 1)
    if len(wave) < frame:
        return wave
    level = _frame_db(wave, frame, hop)
    loud = np.flatnonzero(level > level.max() - top_db)
    if len(loud) == 0 or level.max() <= -200.0:
        return wave
    start = max(loud[0] * hop - frame // 2 - int(pad * sr), 0)
    end = min(loud[-1] * hop + frame // 2 + int(pad * sr), len(wave))
    return wave[start:end]


def normalize_loudness(wave: np.ndarray, *, target_dbfs: float = -23.0, max_peak: float = 0.99) -> np.ndarray:
    """Scale to an RMS level of `target_dbfs`, lowering the gain when the peak would exceed `max_peak`."""
    wave = np.asarray(wave, dtype=np.float32)
    rms = float(np.sqrt(np.mean(np.square(wave, dtype=np.float64)))) if len(wave) else 0.0
    if rms <= 0.0:
        return wave.copy()
    gain = 10.0 ** ((target_dbfs - 20.0 * np.log10(rms)) / 20.0)
    peak = float(np.max(np.abs(wave)))
    gain = min(gain, max_peak / peak)
    return (wave * np.float32(gain)).astype(np.float32)


def check_wave(wave: np.ndarray, sr: int, *, name: object = "<array>", min_duration: float = 0.2,
               max_duration: float | None = None, allow_silent: bool = False,
               silence_dbfs: float = SILENCE_DBFS) -> np.ndarray:
    """Return `wave` as float32 1-D, refusing NaN/inf, silence and durations outside the limits."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise AudioError(name, f"expected mono audio, got an array of shape {wave.shape}; "
                               "mix it down with audio.to_mono")
    if not np.isfinite(wave).all():
        raise AudioError(name, "contains NaN or infinite samples; re-export the file from its source")
    duration = len(wave) / sr
    if duration < min_duration:
        raise AudioError(name, f"{duration:.2f} s long, shorter than min_duration={min_duration:g} s; "
                               "use a longer clip or lower min_duration")
    if max_duration is not None and duration > max_duration:
        raise AudioTooLong(name, f"{duration:.1f} s long, longer than max_duration={max_duration:g} s; {_LONG_HINT}")
    peak = float(np.max(np.abs(wave))) if len(wave) else 0.0
    if not allow_silent and peak < 10.0 ** (silence_dbfs / 20.0):
        level = f"{20 * np.log10(peak):.0f} dBFS" if peak > 0 else "all zero"
        raise AudioError(name, f"silent (peak {level}, below {silence_dbfs:g} dBFS); "
                               "check the recording or pass allow_silent=True")
    return wave
