"""HMM (HTS) AI speech from Festival's English `cmu_us_slt_arctic_hts` voice, when installed (Debian)."""
from __future__ import annotations

from pathlib import Path

from voicelib.data.sources import festival

ENGINE = "festival-hts"
FAMILY = "hmm"
LANGUAGES = ("english",)
synthesize = festival.synthesize


def available(language: str | None = None) -> tuple[bool, str]:
    """Return (True, "") when text2wave and the HTS voice are installed, else how to install them."""
    return festival.available(language, table=festival.HTS_VOICES)


def plan(out_dir: str | Path, *, language: str, **options) -> list:
    """The jobs `collect` would render (for collect_all's shared worker pool)."""
    return festival.plan(out_dir, language=language, engine=ENGINE, family=FAMILY, table=festival.HTS_VOICES,
                         **options)


def collect(out_dir: str | Path, *, language: str, limit: int | None = None, seed: int = 0,
            texts: list[str] | None = None, voice_keys: dict[str, str] | None = None,
            workers: int | None = 1) -> list[dict]:
    """Speak English `texts` (or the shipped prompts) with Festival's HTS voice; existing clips are reused."""
    jobs = plan(out_dir, language=language, limit=limit, seed=seed, texts=texts, voice_keys=voice_keys)
    return festival.collect_jobs(jobs, workers=workers, desc=f"festival-hts {language}")
