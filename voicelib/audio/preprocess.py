"""One wave preparation for every path (train, validation, test, detection): VAD trim, loudness, dither.

Silence length, overall level and runs of exact digital zeros are source cues, not AI cues; `prepare`
removes all three the same way for every clip. Speech regions come from Silero VAD (the ONNX model that
ships inside the `silero-vad` package, run with onnxruntime directly, no torch), or from an energy
detector when that package is missing.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from voicelib.audio import dsp
from voicelib.config import SAMPLE_RATE, from_dict

logger = logging.getLogger(__name__)

SR = SAMPLE_RATE
FRAME = 512  # Silero's frame at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous frame the model sees before each frame
SEQUENCE_MODEL = "silero_vad_16k_sequence.onnx"  # whole-block model: one ONNX call per ~16 s, no Python loop
BLOCK_FRAMES = 512
BACKENDS = ("auto", "silero", "energy")


@dataclasses.dataclass(frozen=True)
class PreprocessConfig:
    """Settings of `prepare`; stored with each model so detection prepares waves as training did."""

    vad: bool = True  # keep only speech regions (plus padding)
    vad_backend: str = "auto"  # "silero", "energy" or "auto" (silero when installed, else energy)
    vad_threshold: float = 0.5  # Silero speech probability above which a frame is speech
    energy_top_db: float = 40.0  # energy backend: frames this far below the loudest are silence
    pad_seconds: float = 0.1  # kept around each speech region
    edge_top_db: float | None = 40.0  # then cut the outer edges to the first/last frame this close to the loudest
    edge_pad_seconds: float = 0.02  # kept outside those outer edges (VAD decisions lag by a 32 ms frame or more)
    max_pause_seconds: float = 0.3  # longer pauses inside speech are cut down to this
    min_seconds: float = 0.5  # a trimmed wave shorter than this falls back to the untrimmed one
    loudness_dbfs: float | None = -23.0  # RMS target; None leaves the level alone
    dither_dbfs: float | None = -90.0  # RMS of the noise that replaces exact zeros; None keeps zeros

    def __post_init__(self) -> None:
        if self.vad_backend not in BACKENDS:
            raise ValueError(f"vad_backend {self.vad_backend!r} unknown; use one of {', '.join(BACKENDS)}")
        if not 0.0 < self.vad_threshold < 1.0:
            raise ValueError(f"vad_threshold={self.vad_threshold} must be in (0, 1)")
        if min(self.pad_seconds, self.edge_pad_seconds, self.max_pause_seconds, self.min_seconds) < 0:
            raise ValueError("pad_seconds, edge_pad_seconds, max_pause_seconds and min_seconds must be >= 0")
        if self.energy_top_db <= 0 or (self.edge_top_db is not None and self.edge_top_db <= 0):
            raise ValueError("energy_top_db and edge_top_db must be positive (edge_top_db None switches it off)")
        for name in ("loudness_dbfs", "dither_dbfs"):
            value = getattr(self, name)
            if value is not None and value >= 0:
                raise ValueError(f"{name}={value} must be below 0 dBFS (or None to switch it off)")

    @classmethod
    def off(cls) -> PreprocessConfig:
        """No processing at all (today's behaviour)."""
        return cls(vad=False, loudness_dbfs=None, dither_dbfs=None)

    @property
    def active(self) -> bool:
        """Whether `prepare` changes anything."""
        return self.vad or self.loudness_dbfs is not None or self.dither_dbfs is not None

    @property
    def key(self) -> str:
        """A short stable name of these settings (the audio cache keeps prepared waves under it)."""
        import json

        return hashlib.sha1(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:10]

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as a plain JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessConfig:
        """Rebuild a config, refusing keys this version does not know (a model saved by a newer voicelib?)."""

        return from_dict(cls, data)


def silero_model_path() -> Path | None:
    """The sequence ONNX model inside the installed silero-vad package, or None (found without importing it)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / SEQUENCE_MODEL
    return path if path.is_file() else None


_SESSION: Any = None  # one onnxruntime session per process, created on first use
_SESSION_PID = 0  # DataLoader workers fork: a child makes its own session rather than share the parent's
_WARNED = False


def _session() -> Any:
    """The process-wide Silero session, or None when silero-vad is not installed."""
    global _SESSION, _SESSION_PID, _WARNED
    if _SESSION is None or _SESSION_PID != os.getpid():
        path = silero_model_path()
        if path is None:
            if not _WARNED:
                logger.warning("silero-vad not installed: using the energy VAD (pip install silero-vad==6.2.3)")
                _WARNED = True
            return None
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = 1
        _SESSION = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        _SESSION_PID = os.getpid()
    return _SESSION


def speech_probabilities(wave: np.ndarray, session: Any) -> np.ndarray:
    """Silero speech probability of each 512-sample frame of a 16 kHz wave."""
    n = (len(wave) + FRAME - 1) // FRAME
    frames = np.zeros((n, FRAME), dtype=np.float32)
    frames.reshape(-1)[: len(wave)] = wave
    context = np.zeros((n, CONTEXT), dtype=np.float32)
    context[1:] = frames[:-1, -CONTEXT:]
    blocks = np.concatenate([context, frames], axis=1)
    h = np.zeros((1, 1, 128), dtype=np.float32)
    c = np.zeros((1, 1, 128), dtype=np.float32)
    probs = []
    for start in range(0, n, BLOCK_FRAMES):
        values, h, c = session.run(["speech_probs", "hn", "cn"], {"input": blocks[start:start + BLOCK_FRAMES],
                                                                  "h": h, "c": c})
        probs.append(values)
    return np.concatenate(probs).reshape(-1) if probs else np.zeros(0, dtype=np.float32)


def energy_speech(wave: np.ndarray, *, top_db: float = 40.0) -> np.ndarray:
    """Energy VAD on the same 512-sample frames: True where a frame is within `top_db` of the loudest."""
    n = (len(wave) + FRAME - 1) // FRAME
    frames = np.zeros((n, FRAME), dtype=np.float64)
    frames.reshape(-1)[: len(wave)] = wave
    db = 10.0 * np.log10(np.maximum(np.mean(frames ** 2, axis=1), 1e-20))
    return (db > db.max() - top_db) & (db > -100.0) if n else np.zeros(0, dtype=bool)


def speech_mask(wave: np.ndarray, cfg: PreprocessConfig) -> tuple[np.ndarray, str]:
    """Per-frame speech flags and the backend that produced them."""
    session = _session() if cfg.vad_backend in ("auto", "silero") else None
    if session is None and cfg.vad_backend == "silero":
        raise RuntimeError("vad_backend='silero' but silero-vad is not installed; pip install silero-vad==6.2.3")
    if session is None:
        return energy_speech(wave, top_db=cfg.energy_top_db), "energy"
    return speech_probabilities(wave, session) > cfg.vad_threshold, "silero"


def regions(mask: np.ndarray, n_samples: int, cfg: PreprocessConfig) -> list[tuple[int, int]]:
    """Sample ranges of the speech frames, padded, with pauses longer than max_pause_seconds shortened."""
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(idx) > 1)
    starts, ends = idx[np.r_[0, breaks + 1]] * FRAME, (idx[np.r_[breaks, idx.size - 1]] + 1) * FRAME
    pad = int(cfg.pad_seconds * SR)
    keep_gap = int(cfg.max_pause_seconds * SR)
    out: list[tuple[int, int]] = []
    for s, e in zip(starts, ends):
        s, e = max(int(s) - pad, 0), min(int(e) + pad, n_samples)
        if out and s - out[-1][1] <= keep_gap:
            out[-1] = (out[-1][0], e)  # a short pause stays as it is
        elif out:
            half = keep_gap // 2  # a long pause becomes max_pause_seconds of itself
            out[-1] = (out[-1][0], min(out[-1][1] + half, s))
            out.append((max(s - (keep_gap - half), out[-1][1]), e))
        else:
            out.append((s, e))
    return out


def trim(wave: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """Keep the speech regions; the untrimmed wave when they are too short (logged at debug level)."""
    mask, backend = speech_mask(wave, cfg)
    spans = regions(mask, len(wave), cfg)
    out = np.concatenate([wave[s:e] for s, e in spans]) if spans else wave[:0]
    if cfg.edge_top_db is not None and len(out):
        out = dsp.trim_silence(out, SR, top_db=cfg.edge_top_db, pad=cfg.edge_pad_seconds)
    if len(out) < max(int(cfg.min_seconds * SR), 1):
        logger.debug("VAD (%s) kept %.2f s of %.2f s; using the untrimmed wave", backend, len(out) / SR, len(wave) / SR)
        return wave
    return out


def dither(wave: np.ndarray, *, level_dbfs: float = -90.0) -> np.ndarray:
    """Replace exact zeros by faint Gaussian noise seeded from the wave's bytes (same input, same output)."""
    zeros = wave == 0
    if not zeros.any():
        return wave
    seed = int.from_bytes(hashlib.sha256(np.ascontiguousarray(wave).tobytes()).digest()[:8], "little")
    noise = np.random.default_rng(seed).standard_normal(int(zeros.sum())) * 10.0 ** (level_dbfs / 20.0)
    out = wave.copy()
    out[zeros] = noise.astype(np.float32)
    out[zeros & (out == 0)] = np.float32(10.0 ** (level_dbfs / 20.0))  # a draw of exactly 0.0 is vanishingly rare
    return out


def prepare(wave: np.ndarray, sr: int, cfg: PreprocessConfig | None = None) -> np.ndarray:
    """Float32 mono 16 kHz wave in, the same prepared for the detector out (VAD trim, loudness, dither)."""
    cfg = cfg or PreprocessConfig()
    if sr != SR:
        raise ValueError(f"prepare expects 16000 Hz audio, got {sr} Hz; load it with decode.load(path, sr=16000)")
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1 or wave.size == 0:
        raise ValueError(f"prepare expects a non-empty mono 1-D wave, got shape {wave.shape}; use dsp.to_mono")
    if cfg.vad:
        wave = trim(wave, cfg)
    if cfg.loudness_dbfs is not None:
        wave = dsp.normalize_loudness(wave, target_dbfs=cfg.loudness_dbfs)
    if cfg.dither_dbfs is not None:
        wave = dither(wave, level_dbfs=cfg.dither_dbfs)
    return np.ascontiguousarray(wave, dtype=np.float32)
