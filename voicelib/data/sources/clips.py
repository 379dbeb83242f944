"""How every source names, stores and describes the clips it makes: 16 kHz FLAC, deterministic names, manifest rows."""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from voicelib.audio import decode, dsp
from voicelib.config import SAMPLE_RATE
from voicelib.files import file_hash
from voicelib.languages import language_code, language_name

log = logging.getLogger(__name__)

TEXTS_DIR = Path(__file__).resolve().parents[1] / "texts"


def clip_path(out_dir: str | Path, *parts: object) -> Path:
    """Return out_dir/<16 hex digits of sha256(parts)>.flac: same engine, voice and text, same file."""
    key = "\x1f".join(str(p) for p in parts)
    return Path(out_dir) / f"{hashlib.sha256(key.encode('utf-8')).hexdigest()[:16]}.flac"


def pick(options: list | tuple, *keys: object, seed: int) -> object:
    """Choose one of `options` deterministically from `keys` and `seed` (stable across runs and machines)."""
    if not options:
        raise ValueError("nothing to choose from; pass at least one option")
    digest = hashlib.sha256("\x1f".join(map(str, (seed, *keys))).encode("utf-8")).digest()
    return options[int.from_bytes(digest[:8], "big") % len(options)]


def store_wave(path: Path, wave: np.ndarray, sr: int) -> Path:
    """Resample to 16 kHz and write atomically as FLAC."""
    if sr != SAMPLE_RATE:
        wave = dsp.resample(wave, sr, SAMPLE_RATE)
    return decode.save(path, wave, SAMPLE_RATE, format="flac")


def make_row(path: Path, *, language: str, label: str, source: str, engine: str, voice: str = "",
             speaker: str = "", group: str = "", text: str = "", family: str = "",
             source_path: str = "") -> dict:
    """Describe one stored clip as a manifest row (duration, rate and hash read from the file)."""
    meta = decode.info(path)
    return {
        "path": str(Path(path).resolve()), "language": language_name(language), "label": label,
        "source": source, "engine": engine, "family": family, "voice": voice, "speaker": speaker, "group": group,
        "text": text, "duration": round(meta.duration, 3), "sample_rate": meta.sample_rate,
        "hash": file_hash(path), "source_path": source_path,
    }


def prompts(language: str) -> list[str]:
    """Return the shipped prompt sentences for `language` (voicelib/texts/<code>.txt), in file order."""
    path = TEXTS_DIR / f"{language_code(language)}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: prompt list missing; reinstall voicelib or pass texts= explicitly")
    lines = [" ".join(line.split()) for line in path.read_text(encoding="utf-8").splitlines()]
    return list(dict.fromkeys(line for line in lines if line))


def choose_texts(texts: list[str] | None, *, language: str, limit: int | None, seed: int) -> list[str]:
    """Given texts in order (first `limit`), or a seeded sample of the shipped prompts when none are given."""
    if texts is None:
        pool = prompts(language)
        order = np.random.default_rng(seed).permutation(len(pool))
        texts = [pool[i] for i in order]
    texts = list(dict.fromkeys(" ".join(str(t).split()) for t in texts if str(t).strip()))
    if limit is not None and limit < 0:
        raise ValueError(f"limit {limit} is negative; use None for no limit or a positive number of clips")
    return texts if limit is None else texts[:limit]
