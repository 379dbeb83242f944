"""HMM-based AI speech from SVOX Pico (`ttspico`), English (US and GB voices), offline."""
from __future__ import annotations

import functools
import importlib.util
import logging
from pathlib import Path

import numpy as np

from voicelib.config import SAMPLE_RATE
from voicelib.data.sources.synth import collect_jobs, plan_tts
from voicelib.errors import SourceUnavailable

log = logging.getLogger(__name__)

ENGINE = "pico"
FAMILY = "hmm"
LANGUAGES = ("english",)
INSTALL = "pip install ttspico==0.3.2 (compiles with gcc)"
VOICES = ("en-US", "en-GB")
SPEEDS = (1.0,)


def available() -> tuple[bool, str]:
    """Return (True, "") when ttspico is installed, else (False, how to install it)."""
    if importlib.util.find_spec("ttspico") is None:
        return False, f"ttspico is not installed; {INSTALL}"
    return True, ""


@functools.lru_cache(maxsize=2)
def _engine(voice: str):
    """One Pico engine per voice and process."""
    import ttspico

    return ttspico.TtsEngine(voice)


def synthesize(text: str, *, language: str, voice: str = "en-US", speed: float = 1.0,
               seed: int = 0) -> tuple[np.ndarray, int]:
    """Speak English `text` with one Pico voice; return (float32 wave, 16000). Deterministic."""
    del seed, speed  # Pico has no sampling; its rate is set by markup we do not use
    if language != "en":
        raise ValueError(f"pico speaks English only, not {language!r}")
    ok, why = available()
    if not ok:
        raise SourceUnavailable(f"pico: {why}")
    pcm = _engine(voice).speak(text)
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / np.float32(32768.0), SAMPLE_RATE


def plan(out_dir: str | Path, *, language: str, limit: int | None = None, seed: int = 0,
         texts: list[str] | None = None, voices: tuple[str, ...] = VOICES,
         voice_keys: dict[str, str] | None = None, durations: dict[str, float] | None = None) -> list:
    """The jobs `collect` would render (for collect_all's shared worker pool)."""
    return plan_tts(__name__, out_dir, engine=ENGINE, family=FAMILY, language=language, voices=list(voices),
                    limit=limit, seed=seed, texts=texts, voice_keys=voice_keys, durations=durations, speeds=SPEEDS)


def collect(out_dir: str | Path, *, language: str, limit: int | None = None, seed: int = 0,
            texts: list[str] | None = None, voices: tuple[str, ...] = VOICES,
            voice_keys: dict[str, str] | None = None, workers: int | None = 1) -> list[dict]:
    """Speak English `texts` (or the shipped prompts) with Pico into out_dir; existing clips are reused."""
    ok, why = available()
    if not ok:
        raise SourceUnavailable(f"pico: {why}")
    jobs = plan(out_dir, language=language, limit=limit, seed=seed, texts=texts, voices=voices, voice_keys=voice_keys)
    return collect_jobs(jobs, workers=workers, desc=f"pico {language}")
