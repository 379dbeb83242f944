"""AI speech from espeak-ng, offline: voice variants, pitches and rates varied deterministically by seed."""
from __future__ import annotations

import logging
from pathlib import Path

from tqdm.auto import tqdm

from voicelib.data import espeak as engine
from voicelib.data.sources.clips import choose_texts, clip_path, make_row, pick, store_wave
from voicelib.languages import language_code, language_name

log = logging.getLogger(__name__)

FAMILY = "formant"
ENGINE = "espeak-ng"
PITCHES = (35, 45, 50, 55, 65)
RATES = (140, 155, 170, 185)


def collect(out_dir: str | Path, *, language: str, limit: int | None = None, seed: int = 0,
            texts: list[str] | None = None, variants: list[str] | None = None,
            pitches: tuple[int, ...] = PITCHES, rates: tuple[int, ...] = RATES,
            voice_keys: dict[str, str] | None = None) -> list[dict]:
    """Speak `texts` (or the shipped prompts) with espeak-ng into out_dir; existing clips are reused.

    The variant is chosen from `voice_keys[text]` when given (so one variant speaks the sentences of one
    human speaker, which keeps speaker-disjoint splits from excluding AI clips), else from the text.
    """
    code = language_code(language)
    variants = list(variants) if variants is not None else engine.voices(code)
    texts = choose_texts(texts, language=language, limit=limit, seed=seed)
    keys = voice_keys or {}
    rows, made = [], 0
    for text in tqdm(texts, desc=f"espeak-ng {language_name(language)}", leave=False):
        variant = pick(variants, "variant", keys.get(text, text), seed=seed)
        pitch = pick(pitches, "pitch", text, seed=seed)
        rate = pick(rates, "rate", text, seed=seed)
        voice = f"{code}+{variant}/p{pitch}/r{rate}"
        path = clip_path(out_dir, ENGINE, voice, text)
        if not path.is_file():
            wave, sr = engine.synthesize(text, language=code, variant=variant, pitch=pitch, rate=rate)
            store_wave(path, wave, sr)
            made += 1
        speaker = f"espeak_{code}_{variant}"
        rows.append(make_row(path, language=language, label="ai", source="espeak", engine=ENGINE,
                             family=FAMILY, voice=voice, speaker=speaker, group=speaker, text=text))
    log.info("espeak-ng %s: %d clips (%d new, %d already there)", language, len(rows), made, len(rows) - made)
    return rows


def available() -> tuple[bool, str]:
    """Return (True, "") when the espeak-ng library loads, else (False, how to fix it)."""
    if engine.is_available():
        return True, ""
    return False, "espeak-ng does not load; pip install --force-reinstall espeakng-loader==0.2.4"
