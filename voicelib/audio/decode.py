"""Read, decode, stream and write audio files (soundfile; ffmpeg for the rest) as float32 mono."""
from __future__ import annotations

import io
import json
import logging
import math
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf
import soxr

from voicelib.audio.dsp import _LONG_HINT, check_wave, normalize_loudness, resample, to_mono, trim_silence
from voicelib.config import SAMPLE_RATE
from voicelib.errors import AudioError, AudioTooLong
from voicelib.files import atomic_path

log = logging.getLogger(__name__)


SOUNDFILE_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus")


FFMPEG_EXTENSIONS = (".webm", ".m4a", ".mp4", ".aac", ".wma")


SUPPORTED_EXTENSIONS = SOUNDFILE_EXTENSIONS + FFMPEG_EXTENSIONS


SAVE_FORMATS = {  # name -> (libsndfile format, default subtype)
    "wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "mp3": ("MP3", "MPEG_LAYER_III"),
    "ogg": ("OGG", "VORBIS"), "opus": ("OGG", "OPUS"),
}


_INSTALL_FFMPEG = "install ffmpeg (apt-get install ffmpeg / conda install ffmpeg) or convert to wav/flac"




_TRUNCATION_MARKS = ("ended unexpectedly", "lacks an end-of-stream", "Junk after the last page")


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says: duration (s), sample rate, channel count and container format."""

    duration: float
    sample_rate: int
    channels: int
    format: str
    frames: int


def _check_path(path: str | os.PathLike) -> Path:
    """Refuse a missing file, a directory, an empty file or an unsupported extension."""
    path = Path(path)
    if path.is_dir():
        raise AudioError(path, "is a directory, not an audio file; pass a file inside it")
    if not path.exists():
        raise AudioError(path, "no such file; check the path (relative paths start at the current directory)")
    if path.stat().st_size == 0:
        raise AudioError(path, "file is empty (0 bytes); re-download or re-record it")
    if path.suffix.lower() not in SUPPORTED_EXTENSIONS:
        names = ", ".join(e.lstrip(".") for e in SUPPORTED_EXTENSIONS)
        raise AudioError(path, f"unsupported extension {path.suffix or '(none)'!r}; convert it to one of {names}")
    return path


def _sf_reason(exc: Exception) -> str:
    """Turn a libsndfile error into a one-line reason with a fix."""
    text = " ".join(str(exc).split())
    if "not recognised" in text or "unknown format" in text.lower():
        return (f"not a readable audio file ({text.split(':')[-1].strip()}); "
                "check it is really audio or convert it to wav/flac")
    return f"truncated or corrupt audio ({text}); re-download it or convert it again"


def info(path: str | os.PathLike) -> AudioInfo:
    """Read a file's header (no decoding) and return its duration, rate, channels and format."""
    path = _check_path(path)
    if path.suffix.lower() in FFMPEG_EXTENSIONS:
        return _ffprobe_info(path)
    try:
        meta = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError(path, _sf_reason(exc)) from None
    return AudioInfo(float(meta.duration), int(meta.samplerate), int(meta.channels), str(meta.format), int(meta.frames))


def load(path: str | os.PathLike, *, sr: int | None = SAMPLE_RATE, trim: bool = False, normalize: bool = False,
         min_duration: float = 0.2, max_duration: float | None = 1800.0, allow_silent: bool = False) -> np.ndarray:
    """Decode a speech file to float32 mono at `sr` (None keeps the file's rate); bad input raises AudioError.

    max_duration=None loads any length whole; to score long files in bounded memory use `stream_blocks`.
    """
    path = _check_path(path)
    max_duration = math.inf if max_duration is None else max_duration
    if path.suffix.lower() in FFMPEG_EXTENSIONS:
        data, native_sr = _ffmpeg_decode(path, max_duration=max_duration)
    else:
        data, native_sr = _sf_decode(path, max_duration=max_duration)
    wave = to_mono(data)
    if sr is not None and sr != native_sr:
        wave = resample(wave, native_sr, sr)
    out_sr = sr or native_sr
    if trim or normalize:  # refuse NaN and silence before they reach the level computations
        wave = check_wave(wave, out_sr, name=path, min_duration=0.0, allow_silent=allow_silent)
    if trim:
        wave = trim_silence(wave, out_sr)
    if normalize:
        wave = normalize_loudness(wave)
    return check_wave(wave, out_sr, name=path, min_duration=min_duration, max_duration=max_duration,
                      allow_silent=allow_silent)


def _too_long(path: Path, duration: float, max_duration: float) -> AudioError:
    """Build the error for a file over `max_duration`."""
    return AudioTooLong(path, f"{duration:.1f} s long, longer than max_duration={max_duration:g} s; {_LONG_HINT}")


def _sf_decode(path: Path, *, max_duration: float) -> tuple[np.ndarray, int]:
    """Decode with libsndfile after checking the header duration; detect truncation."""
    try:
        with sf.SoundFile(str(path)) as handle:
            rate, frames = int(handle.samplerate), int(handle.frames)
            if frames > 0 and frames / rate > max_duration:
                raise _too_long(path, frames / rate, max_duration)
            report = handle.extra_info if handle.format in ("WAV", "OGG") else ""
            data = handle.read(dtype="float32")
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError(path, _sf_reason(exc)) from None
    _check_truncation(path, report, frames, len(data))
    return data, rate


def _check_truncation(path: Path, report: str, frames: int, decoded: int) -> None:
    """Refuse a file that ends before its header or container says it should."""
    if _wav_data_short(report) or any(mark in report for mark in _TRUNCATION_MARKS):
        raise AudioError(path, "truncated file (it ends before its header says it should); "
                               "re-download it or convert it again")
    if decoded < 0.9 * frames:
        raise AudioError(path, f"truncated file (header promises {frames} frames, only {decoded} decode); "
                               "re-download it or convert it again")
    if decoded == 0:
        raise AudioError(path, "no audio samples in the file; re-record or re-export it")


def _wav_data_short(report: str) -> bool:
    """Return True when libsndfile's WAV log says the data chunk is shorter than its header claims."""
    for line in report.splitlines():
        if line.startswith("data :") and "should be" in line:
            claimed = int(line.split(":")[1].split("(")[0])
            actual = int(line.split("should be")[1].strip(" )"))
            return actual < claimed and claimed not in (0, 0xFFFFFFFF, 0x7FFFFFFF)  # streamed WAVs use these
    return False


def _ffmpeg(path: Path) -> str:
    """Return the ffmpeg executable or raise the install hint."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise AudioError(path, f"{path.suffix.lower()} needs ffmpeg to decode and ffmpeg is not on PATH; "
                               f"{_INSTALL_FFMPEG}")
    return exe


def _ffmpeg_decode(path: Path, *, max_duration: float) -> tuple[np.ndarray, int]:
    """Decode through an ffmpeg subprocess into a temporary float WAV, reading at most max_duration + 1 s."""
    exe = _ffmpeg(path)
    with tempfile.TemporaryDirectory(prefix="voicelib-ffmpeg-") as tmp:
        out = Path(tmp) / "decoded.wav"
        limit = ["-t", f"{max_duration + 1.0:g}"] if math.isfinite(max_duration) else []
        cmd = [exe, "-nostdin", "-v", "error", "-y", "-i", str(path), *limit, "-vn", "-c:a", "pcm_f32le",
               "-f", "wav", str(out)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired:
            raise AudioError(path, "ffmpeg took over 10 minutes to decode it; convert it to wav/flac first") from None
        if proc.returncode != 0 or not out.is_file():
            detail = " ".join(proc.stderr.split())[:200] or f"exit code {proc.returncode}"
            raise AudioError(path, f"ffmpeg cannot decode it ({detail}); "
                                   "check it is really audio or convert it to wav/flac")
        data, rate = _sf_decode(out, max_duration=float("inf"))
    if len(data) / rate > max_duration:
        raise _too_long(path, len(data) / rate, max_duration)
    return data, rate


def stream_blocks(path: str | os.PathLike, *, sr: int = SAMPLE_RATE, block_seconds: float = 20.0,
                  max_duration: float | None = None) -> Iterator[np.ndarray]:
    """Yield a file as float32 mono blocks at `sr`, decoding (and resampling) one block at a time."""
    path = _check_path(path)
    limit = math.inf if max_duration is None else float(max_duration)
    if path.suffix.lower() in FFMPEG_EXTENSIONS:
        yield from _ffmpeg_blocks(path, sr=sr, block=max(int(block_seconds * sr), 1), limit=limit)
        return
    try:
        handle = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError(path, _sf_reason(exc)) from None
    with handle:
        rate, frames = int(handle.samplerate), int(handle.frames)
        if frames > 0 and frames / rate > limit:
            raise _too_long(path, frames / rate, limit)
        report = handle.extra_info if handle.format in ("WAV", "OGG") else ""
        resampler = soxr.ResampleStream(rate, sr, 1, dtype="float32", quality="HQ") if rate != sr else None
        block, decoded, last = max(int(block_seconds * rate), 1), 0, False
        while not last:
            try:
                data = handle.read(block, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as exc:
                raise AudioError(path, _sf_reason(exc)) from None
            last, decoded = len(data) < block, decoded + len(data)
            if decoded / rate > limit:
                raise _too_long(path, decoded / rate, limit)
            wave = to_mono(data) if len(data) else np.zeros(0, np.float32)
            wave = resampler.resample_chunk(wave, last=last) if resampler is not None else wave
            if not np.isfinite(wave).all():
                raise AudioError(path, "contains NaN or infinite samples; re-export the file from its source")
            if wave.size:
                yield wave
    _check_truncation(path, report, frames, decoded)


def _ffmpeg_blocks(path: Path, *, sr: int, block: int, limit: float) -> Iterator[np.ndarray]:
    """Yield blocks of float32 mono at `sr` read from an `ffmpeg ... -f f32le -` pipe."""
    cmd = [_ffmpeg(path), "-nostdin", "-v", "error", "-i", str(path), "-vn", "-f", "f32le", "-ac", "1",
           "-ar", str(sr), "-"]
    with tempfile.TemporaryFile() as errors:  # a file, not a pipe: a chatty ffmpeg cannot block on stderr
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errors, stdin=subprocess.DEVNULL)
        decoded = 0
        try:
            while data := proc.stdout.read(4 * block):
                wave = np.frombuffer(data[: len(data) // 4 * 4], dtype="<f4")
                decoded += wave.size
                if decoded / sr > limit:
                    raise _too_long(path, decoded / sr, limit)
                if not np.isfinite(wave).all():
                    raise AudioError(path, "contains NaN or infinite samples; re-export the file from its source")
                yield wave
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        errors.seek(0)
        detail = " ".join(errors.read().decode("utf-8", "replace").split())[:200]
    if code != 0:
        raise AudioError(path, f"ffmpeg cannot decode it ({detail or f'exit code {code}'}); "
                               "check it is really audio or convert it to wav/flac")
    if decoded == 0:
        raise AudioError(path, "no audio samples in the file; re-record or re-export it")


def _ffprobe_info(path: Path) -> AudioInfo:
    """Read duration, rate and channels of an ffmpeg-only format with ffprobe."""
    _ffmpeg(path)
    exe = shutil.which("ffprobe")
    if exe is None:
        raise AudioError(path, f"reading its header needs ffprobe, which is not on PATH; {_INSTALL_FFMPEG}")
    cmd = [exe, "-v", "error", "-select_streams", "a:0", "-show_entries",
           "stream=sample_rate,channels:format=duration,format_name", "-of", "json", str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    try:
        meta = json.loads(proc.stdout)
        stream, fmt = meta["streams"][0], meta["format"]
        rate, duration = int(stream["sample_rate"]), float(fmt["duration"])
        return AudioInfo(duration, rate, int(stream["channels"]), str(fmt["format_name"]), int(duration * rate))
    except (ValueError, KeyError, IndexError):
        raise AudioError(path, "ffprobe finds no audio stream; "
                               "check it is really audio or convert it to wav/flac") from None


def decode_bytes(data: bytes, *, sr: int | None = SAMPLE_RATE, name: str = "<bytes>") -> np.ndarray:
    """Decode an in-memory wav/flac/mp3/ogg/opus file to float32 mono at `sr` (for codec round-trips)."""
    try:
        decoded, rate = sf.read(io.BytesIO(data), dtype="float32")
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError(name, _sf_reason(exc)) from None
    wave = to_mono(decoded)
    return resample(wave, rate, sr) if sr is not None and sr != rate else wave


def encode_bytes(wave: np.ndarray, sr: int, *, format: str = "wav", compression_level: float | None = None,
                 bitrate_kbps: int | None = None) -> bytes:
    """Encode a mono wave as an in-memory file (see `save` for the quality options)."""
    fmt, subtype = _save_format(format)
    buffer = io.BytesIO()
    sf.write(buffer, _clip(wave), int(sr), format=fmt, subtype=subtype,
             **_quality(fmt, int(sr), compression_level, bitrate_kbps))
    return buffer.getvalue()


def _quality(fmt: str, sr: int, compression_level: float | None, bitrate_kbps: int | None) -> dict:
    """Translate the quality options into soundfile keywords."""
    if bitrate_kbps is not None:
        if fmt != "MP3":
            raise ValueError(f"bitrate_kbps applies to mp3 only; use compression_level for {fmt.lower()}")
        # libsndfile maps a constant-bitrate compression level linearly onto the MPEG layer's bitrate range
        low, high = (32, 320) if sr >= 32000 else (8, 160) if sr >= 16000 else (8, 64)
        if not low <= bitrate_kbps <= high:
            raise ValueError(f"bitrate_kbps={bitrate_kbps} impossible for mp3 at {sr} Hz; use {low}..{high}")
        return {"bitrate_mode": "CONSTANT", "compression_level": min((high - bitrate_kbps) / (high - low), 0.99)}
    if compression_level is None:
        return {}
    if not 0.0 <= compression_level <= 1.0:
        raise ValueError(f"compression_level={compression_level} out of range; use 0 (best) .. 1 (smallest)")
    return {"compression_level": min(float(compression_level), 0.99 if fmt == "MP3" else 1.0)}  # lame refuses 1.0


def _save_format(format: str) -> tuple[str, str]:
    """Map a short format name to libsndfile's (format, subtype)."""
    key = format.lower().lstrip(".")
    if key not in SAVE_FORMATS:
        raise ValueError(f"cannot save format {format!r}; use one of {', '.join(SAVE_FORMATS)}")
    return SAVE_FORMATS[key]


def _clip(wave: np.ndarray) -> np.ndarray:
    """Return a float32 1-D copy clipped to [-1, 1] (integer formats wrap around otherwise)."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"expected a mono 1-D wave, got shape {wave.shape}; mix it down with audio.to_mono first")
    if not np.all(np.isfinite(wave)):
        raise ValueError("wave contains NaN or infinite samples; fix the processing that produced it")
    return np.clip(wave, -1.0, 1.0)


def save(path: str | os.PathLike, wave: np.ndarray, sr: int, *, format: str | None = None,
         compression_level: float | None = None, bitrate_kbps: int | None = None, overwrite: bool = True) -> Path:
    """Write a mono wave atomically as wav/flac/mp3/ogg/opus (format from the extension unless given).

    compression_level: 0 (best, largest) .. 1 (smallest) for mp3/ogg/opus; bitrate_kbps: constant mp3 bitrate.
    """
    path = Path(path)
    fmt, subtype = _save_format(format or path.suffix or "?")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: already exists; pass overwrite=True or choose another name")
    options = _quality(fmt, int(sr), compression_level, bitrate_kbps)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), _clip(wave), int(sr), format=fmt, subtype=subtype, **options)
    return path
