"""Statistical-parametric (clustergen) English AI speech from flite, when installed (Debian `flite`)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from voicelib.data.sources.command import missing, run_to_wave
from voicelib.data.sources.synth import collect_jobs, plan_tts
from voicelib.errors import SourceUnavailable

log = logging.getLogger(__name__)

ENGINE = "flite"
FAMILY = "parametric"
LANGUAGES = ("english",)
INSTALL = "sudo apt-get install flite"
VOICES = ("slt", "awb", "rms")  # 16 kHz clustergen voices; kal is 8 kHz (a band cue), left out
STRETCHES = (0.9, 1.0, 1.15)
TIMEOUT = 60.0


def available(language: str | None = None) -> tuple[bool, str]:
    """Return (True, "") when flite is on PATH (and `language` is English, if given), else how to install it."""
    if language is not None and language not in ("en", "english"):
        return False, f"flite speaks English only, not {language}"
    if missing(("flite",)):
        return False, f"flite is not installed; {INSTALL}"
    return True, ""


def synthesize(text: str, *, language: str, voice: str = "slt", speed: float = 1.0,
               seed: int = 0) -> tuple[np.ndarray, int]:
    """Speak English `text` with one flite voice (speed is a duration stretch); return (float32 wave, rate)."""
    del seed  # flite is deterministic
    if language != "en":
        raise ValueError(f"flite speaks English only, not {language!r}")
    if voice not in VOICES:
        raise ValueError(f"flite: voice {voice!r} not offered; choose from {', '.join(VOICES)}")
    return run_to_wave(["flite", "-voice", voice, "--setf", f"duration_stretch={float(speed):.3f}", "-f", "{text}",
                        "-o", "{out}"], text=text, timeout=TIMEOUT, name=f"flite {voice}")


def plan(out_dir: str | Path, *, language: str, limit: int | None = None, seed: int = 0,
         texts: list[str] | None = None, voices: tuple[str, ...] = VOICES,
         voice_keys: dict[str, str] | None = None, durations: dict[str, float] | None = None) -> list:
    """The jobs `collect` would render (for collect_all's shared worker pool)."""
    return plan_tts(__name__, out_dir, engine=ENGINE, family=FAMILY, language=language, voices=list(voices),
                    limit=limit, seed=seed, texts=texts, voice_keys=voice_keys, durations=durations, speeds=STRETCHES)


def collect(out_dir: str | Path, *, language: str, limit: int | None = None, seed: int = 0,
            texts: list[str] | None = None, voices: tuple[str, ...] = VOICES,
            voice_keys: dict[str, str] | None = None, workers: int | None = 1) -> list[dict]:
    """Speak English `texts` (or the shipped prompts) with flite into out_dir; existing clips are reused."""
    ok, why = available()
    if not ok:
        raise SourceUnavailable(f"flite: {why}")
    jobs = plan(out_dir, language=language, limit=limit, seed=seed, texts=texts, voices=voices, voice_keys=voice_keys)
    return collect_jobs(jobs, workers=workers, desc=f"flite {language}")
