"""Neural AI speech from hibari (acoustic model distilled from Kokoro, harmonic-plus-noise decoder), from IPA."""
from __future__ import annotations

import functools
import importlib.util
import logging
from pathlib import Path

import numpy as np

from voicelib.data.sources.kokoro import IPA_FIXES, ipa, pieces
from voicelib.data.sources.synth import collect_jobs, plan_tts
from voicelib.errors import SourceUnavailable

log = logging.getLogger(__name__)

ENGINE = "hibari"
FAMILY = "neural"
LANGUAGES = ("english", "hindi", "tamil", "malayalam", "telugu")
INSTALL = "pip install hibari-tts==0.2.1"
VOICES = ("heart",)  # the voice inside the package; the others download at run time
SPEEDS = (0.85, 0.95, 1.05, 1.15)  # speaking rates: the one voice sounds less alike
MAX_PHONEMES = 400


def available() -> tuple[bool, str]:
    """Return (True, "") when hibari-tts is installed, else (False, how to install it)."""
    if importlib.util.find_spec("hibari") is None:
        return False, f"hibari-tts is not installed; {INSTALL}"
    return True, ""


@functools.lru_cache(maxsize=4)
def _model(voice: str):
    """Load one hibari voice once per process (one onnxruntime thread: workers parallelise)."""
    ok, why = available()
    if not ok:
        raise SourceUnavailable(f"hibari: {why}")
    from hibari import Hibari

    return Hibari(voice, threads=1)


def synthesize(text: str, *, language: str, voice: str = "heart", speed: float = 1.0,
               seed: int = 0) -> tuple[np.ndarray, int]:
    """Speak `text` (language an ISO code) from its espeak-ng IPA; return (float32 wave, 24000); seeded noise."""
    model = _model(voice)
    phonemes = ipa(text, language)
    for old, new in IPA_FIXES.items():
        phonemes = phonemes.replace(old, new)
    phonemes = "".join(ch for ch in phonemes if ch in model.vocab)
    gap = np.zeros(int(0.15 * model.sample_rate), dtype=np.float32)
    rng = np.random.default_rng(seed)
    parts = []
    for piece in pieces(phonemes, MAX_PHONEMES):  # long sentences: one call per clause group
        parts += [np.asarray(model.from_ids(model.ids(piece), speed, rng), dtype=np.float32).ravel(), gap]
    if not parts:
        raise ValueError(f"hibari: no phonemes the model knows in {text!r} ({language})")
    wave = np.concatenate(parts[:-1])
    return wave, int(model.sample_rate)


def plan(out_dir: str | Path, *, language: str, limit: int | None = None, seed: int = 0,
         texts: list[str] | None = None, voices: tuple[str, ...] = VOICES, speeds: tuple[float, ...] = SPEEDS,
         voice_keys: dict[str, str] | None = None, durations: dict[str, float] | None = None) -> list:
    """The jobs `collect` would render (for collect_all's shared worker pool)."""
    return plan_tts(__name__, out_dir, engine=ENGINE, family=FAMILY, language=language, voices=list(voices),
                    limit=limit, seed=seed, texts=texts, voice_keys=voice_keys, durations=durations, speeds=speeds)


def collect(out_dir: str | Path, *, language: str, limit: int | None = None, seed: int = 0,
            texts: list[str] | None = None, voices: tuple[str, ...] = VOICES, speeds: tuple[float, ...] = SPEEDS,
            voice_keys: dict[str, str] | None = None, workers: int | None = 1) -> list[dict]:
    """Speak `texts` (or the shipped prompts) with hibari into out_dir; existing clips are reused."""
    ok, why = available()
    if not ok:
        raise SourceUnavailable(f"hibari: {why}")
    jobs = plan(out_dir, language=language, limit=limit, seed=seed, texts=texts, voices=voices, speeds=speeds,
                voice_keys=voice_keys)
    return collect_jobs(jobs, workers=workers, desc=f"hibari {language}")
