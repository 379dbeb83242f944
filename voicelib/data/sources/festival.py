"""Diphone (Hindi, Telugu, English) and HTS (English) AI speech from Festival's text2wave, when installed (Debian)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from voicelib.data.sources.command import missing, run_to_wave
from voicelib.data.sources.synth import collect_jobs, plan_tts
from voicelib.errors import SourceUnavailable
from voicelib.languages import language_code

log = logging.getLogger(__name__)

ENGINE = "festival"
FAMILY = "diphone"
FESTIVAL_DIR = Path("/usr/share/festival")
VOICE_DIR = FESTIVAL_DIR / "voices"
# per ISO code: (festival voice, Debian packages, voice folder, language support folder under FESTIVAL_DIR or "");
# the NSK voices are the only native Indic ones packaged, and they need their language's lexicon and phone set
# (festival-hi, festival-te: only Recommended by the voice packages, so --no-install-recommends leaves them out)
DIPHONE_VOICES = {"hi": [("hindi_NSK_diphone", "festvox-hi-nsk festival-hi", "hindi", "hindi_scm")],
                  "te": [("telugu_NSK_diphone", "festvox-te-nsk festival-te", "telugu", "telugu_scm")],
                  "en": [("kal_diphone", "festvox-kallpc16k", "english", "")]}
HTS_VOICES = {"en": [("cmu_us_slt_arctic_hts", "festvox-us-slt-hts", "us", "")]}
LANGUAGES = ("hindi", "telugu", "english")
STRETCHES = (0.9, 1.0, 1.15)  # Duration_Stretch: slower and faster readings of the same voice
TIMEOUT = 60.0


def _install(table: dict) -> str:
    packages = " ".join(sorted({pkg for voices in table.values() for _, pkgs, _, _ in voices for pkg in pkgs.split()}))
    return f"sudo apt-get install festival {packages}"


def installed_voices(language: str, table: dict | None = None) -> list[str]:
    """The Festival voices of this table installed for `language` (ISO code or name)."""
    code = language_code(language)
    voices = (table or DIPHONE_VOICES).get(code, [])
    return [v for v, _, folder, support in voices
            if not missing(("text2wave",), (str(VOICE_DIR / folder / v), *([str(FESTIVAL_DIR / support)] if support
                                                                           else [])))]


def available(language: str | None = None, *, table: dict | None = None) -> tuple[bool, str]:
    """Return (True, "") when text2wave and a voice (for `language`, if given) are installed, else how to install."""
    table = table or DIPHONE_VOICES
    hint = _install(table)
    if missing(("text2wave",)):
        return False, f"Festival is not installed; {hint}"
    codes = [language_code(language)] if language else list(table)
    if not any(installed_voices(c, table) for c in codes):
        return False, f"no Festival voice installed for {language or 'any language'}; {hint}"
    return True, ""


def synthesize(text: str, *, language: str, voice: str, speed: float = 1.0, seed: int = 0) -> tuple[np.ndarray, int]:
    """Speak `text` with one Festival voice (speed is a duration stretch); return (float32 wave, its rate)."""
    del language, seed  # the voice fixes the language; Festival is deterministic
    if not voice.replace("_", "").isalnum():
        raise ValueError(f"festival: bad voice name {voice!r}")
    scheme = f"(voice_{voice}) (Parameter.set 'Duration_Stretch {float(speed):.3f})"
    return run_to_wave(["text2wave", "-eval", scheme, "{text}", "-o", "{out}"], text=text, timeout=TIMEOUT,
                       name=f"festival {voice}")


def plan(out_dir: str | Path, *, language: str, limit: int | None = None, seed: int = 0,
         texts: list[str] | None = None, voice_keys: dict[str, str] | None = None,
         durations: dict[str, float] | None = None, engine: str = ENGINE, family: str = FAMILY,
         table: dict | None = None) -> list:
    """The jobs `collect` would render: every installed voice of the table for `language`."""
    voices = installed_voices(language, table or DIPHONE_VOICES)
    if not voices:
        raise SourceUnavailable(f"{engine}: {available(language, table=table or DIPHONE_VOICES)[1]}")
    return plan_tts(__name__, out_dir, engine=engine, family=family, language=language, voices=voices,
                    limit=limit, seed=seed, texts=texts, voice_keys=voice_keys, durations=durations, speeds=STRETCHES)


def collect(out_dir: str | Path, *, language: str, limit: int | None = None, seed: int = 0,
            texts: list[str] | None = None, voice_keys: dict[str, str] | None = None,
            workers: int | None = 1) -> list[dict]:
    """Speak `texts` (or the shipped prompts) with Festival's diphone voice of `language`; existing clips reused."""
    jobs = plan(out_dir, language=language, limit=limit, seed=seed, texts=texts, voice_keys=voice_keys)
    return collect_jobs(jobs, workers=workers, desc=f"festival {language}")
