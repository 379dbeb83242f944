"""Robustness - re-encode every test clip (MP3, Opus, telephone band, noise) and score it again."""
from __future__ import annotations

import io
import logging
from typing import Callable, Sequence

import numpy as np

from voicelib import metrics
from voicelib.audio import decode
from voicelib.audio.augment import add_noise, telephone
from voicelib.evaluation.clips import score_waves
from voicelib.metrics import compute_metrics, eer  # noqa: F401 - eer is part of this module's API

log = logging.getLogger(__name__)


MP3_LEVEL = {32: 0.8421, 64: 0.6316}  # libsndfile CBR level for MPEG-2 layer III at 16 kHz: 160 - 152 * level kbps


def _mp3(kbps: int) -> Callable:
    def encode(wave: np.ndarray, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        import soundfile as sf

        buffer = io.BytesIO()
        sf.write(buffer, np.clip(wave, -1, 1), sr, format="MP3", subtype="MPEG_LAYER_III",
                 compression_level=MP3_LEVEL[kbps], bitrate_mode="CONSTANT")
        data = buffer.getvalue()
        return decode.decode_bytes(data, sr=sr, name=f"<mp3 {kbps} kbps>"), len(data)
    return encode


def _opus(wave: np.ndarray, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    data = decode.encode_bytes(wave, sr, format="opus", compression_level=0.9)
    return decode.decode_bytes(data, sr=sr, name="<opus>"), len(data)


def _telephone(wave: np.ndarray, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    return telephone(wave, sr, rng, band=(300.0, 3400.0), resample_8k=1.0), 0


def _noise(wave: np.ndarray, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    return add_noise(wave, sr, rng, snr_db=(10.0, 10.0), colors=("white",)), 0


CONDITIONS: dict[str, Callable] = {
    "mp3_32kbps": _mp3(32), "mp3_64kbps": _mp3(64), "opus_vbr_low": _opus,
    "telephone_8khz": _telephone, "white_noise_10db": _noise,
}


def degrade(wave: np.ndarray, sr: int, condition: str, *, seed: int) -> tuple[np.ndarray, int]:
    """Apply one robustness condition with fixed, seeded parameters; return (wave, encoded bytes or 0)."""
    if condition not in CONDITIONS:
        raise ValueError(f"unknown robustness condition {condition!r}; choose from {', '.join(CONDITIONS)}")
    return CONDITIONS[condition](np.asarray(wave, dtype=np.float32), sr, np.random.default_rng(seed))


def robustness(detector, waves: Sequence[np.ndarray], labels, *, seed: int, chunk_duration: float,
               overlap: float, conditions: Sequence[str] = tuple(CONDITIONS)) -> tuple[dict, dict]:
    """Re-encode every test clip under each condition and re-score; return ({condition: metrics}, scores)."""
    out, scores = {}, {}
    sr = detector.sample_rate
    for k, name in enumerate(conditions):
        degraded, size = [], 0
        for i, w in enumerate(waves):
            d, n_bytes = degrade(w, sr, name, seed=seed * 1000 + 97 * k + i)
            degraded.append(d)
            size += n_bytes
        s = score_waves(detector, degraded, chunk_duration=chunk_duration, overlap=overlap)
        ok = s["error"].isna().to_numpy()
        y = np.asarray(labels)[ok]
        out[name] = {"eer": metrics.eer(y, s["logit"][ok])[0], "roc_auc": metrics.roc_auc(y, s["logit"][ok]),
                     "accuracy": float(((s["prob"][ok] >= detector.threshold).astype(int) == y).mean()),
                     "n": int(ok.sum())}
        if size:
            out[name]["mean_kbps"] = size * 8 / 1000 / (sum(len(w) for w in waves) / sr)
        scores[name] = s["logit"].to_numpy()
        log.info("robustness %s: EER %.3f", name, out[name]["eer"])
    return out, scores
