"""The five supported languages and their codes in each source."""
from __future__ import annotations

LANGUAGES: dict[str, str] = {
    "english": "en",
    "hindi": "hi",
    "tamil": "ta",
    "malayalam": "ml",
    "telugu": "te",
}
LANGUAGE_NAMES: list[str] = list(LANGUAGES)  # index order of the model's language head
FLEURS_CONFIG = {"english": "en_us", "hindi": "hi_in", "tamil": "ta_in", "malayalam": "ml_in", "telugu": "te_in"}
EDGE_VOICES = {
    "english": ["en-US-AriaNeural", "en-US-GuyNeural", "en-IN-NeerjaNeural", "en-IN-PrabhatNeural"],
    "hindi": ["hi-IN-SwaraNeural", "hi-IN-MadhurNeural"],
    "tamil": ["ta-IN-PallaviNeural", "ta-IN-ValluvarNeural"],
    "malayalam": ["ml-IN-SobhanaNeural", "ml-IN-MidhunNeural"],
    "telugu": ["te-IN-ShrutiNeural", "te-IN-MohanNeural"],
}


def language_code(language: str) -> str:
    """Return the ISO 639-1 code of a language name (or code), refusing unknown ones."""
    key = language.strip().lower()
    if key in LANGUAGES:
        return LANGUAGES[key]
    if key in LANGUAGES.values():
        return key
    raise ValueError(f"unknown language {language!r}: choose one of {', '.join(LANGUAGES)}")


def language_name(language: str) -> str:
    """Return the full language name for a name or ISO code."""
    code = language_code(language)
    return next(name for name, c in LANGUAGES.items() if c == code)
