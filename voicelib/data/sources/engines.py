"""The registry of AI speech engines: name, family, languages, network, vocoder or not, and whether it is installed."""
from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field

from voicelib.languages import language_name

log = logging.getLogger(__name__)

ALL = ("english", "hindi", "tamil", "malayalam", "telugu")


@dataclass(frozen=True)
class Engine:
    """One engine: `module` makes its clips (collect/plan for TTS, synthesize(source=...) for vocoders)."""

    name: str
    family: str
    languages: tuple[str, ...]
    module: str
    network: bool = False
    vocoder: bool = False
    default: bool = True  # part of "auto" when available (Codec2 is not: its 8 kHz band is a cue)
    args: dict = field(default_factory=dict)  # fixed synthesize() arguments (a vocoder's variant)
    note: str = ""
    row_engine: str = ""  # the `engine` its manifest rows carry, when not its name

    @property
    def engine_column(self) -> str:
        """The value of the manifest's `engine` column for this engine's clips."""
        return self.row_engine or self.name

    def load(self):
        """Import the engine's module."""
        return importlib.import_module(self.module)

    def available(self, language: str | None = None) -> tuple[bool, str]:
        """(True, "") when the engine can run here (for `language`, if given), else (False, one-line how-to-fix)."""
        if language is not None and language_name(language) not in self.languages:
            speaks = ", ".join(self.languages)
            return False, f"{self.name} does not speak {language_name(language)} (it speaks {speaks})"
        try:
            module = self.load()
        except ImportError as exc:
            return False, f"{self.name}: cannot import {self.module} ({exc})"
        check = getattr(module, "available", None)
        if check is None:
            return True, ""
        try:
            return check(language) if _takes_language(check) and language else check()
        except Exception as exc:  # noqa: BLE001 - a broken optional engine must not break the listing
            return False, f"{self.name}: availability check failed ({type(exc).__name__}: {exc})"


def _takes_language(check) -> bool:
    """True when an availability check takes a language argument."""
    return check.__code__.co_argcount >= 1


ENGINES: dict[str, Engine] = {e.name: e for e in (
    Engine("espeak", "formant", ALL, "voicelib.data.sources.espeak", row_engine="espeak-ng"),
    Engine("kokoro", "neural", ALL, "voicelib.data.sources.kokoro", note="Kokoro-82M int8 ONNX from espeak-ng IPA"),
    Engine("hibari", "neural", ALL, "voicelib.data.sources.hibari",
           note="Kokoro-distilled, harmonic-plus-noise decoder"),
    Engine("festival", "diphone", ("hindi", "telugu", "english"), "voicelib.data.sources.festival",
           note="NSK diphone voices (hi, te), kal diphone (en)"),
    Engine("festival-hts", "hmm", ("english",), "voicelib.data.sources.festival_hts", note="cmu_us_slt_arctic_hts"),
    Engine("pico", "hmm", ("english",), "voicelib.data.sources.pico", note="SVOX Pico en-US, en-GB"),
    Engine("flite", "parametric", ("english",), "voicelib.data.sources.flite", note="clustergen slt, awb, rms"),
    Engine("world-harvest", "vocoder", ALL, "voicelib.data.sources.world", vocoder=True, args={"variant": "harvest"}),
    Engine("world-dio", "vocoder", ALL, "voicelib.data.sources.world", vocoder=True, args={"variant": "dio"}),
    Engine("world-coded", "vocoder", ALL, "voicelib.data.sources.world", vocoder=True, args={"variant": "coded"},
           note="dio + coded spectral envelope and aperiodicity"),
    Engine("mlsa", "vocoder", ALL, "voicelib.data.sources.mlsa", vocoder=True, note="mel-cepstrum + MLSA filter"),
    Engine("griffin-lim", "vocoder", ALL, "voicelib.data.sources.griffinlim", vocoder=True, note="80-band mel"),
    Engine("codec2", "vocoder", ALL, "voicelib.data.sources.codec2", vocoder=True, default=False,
           note="8 kHz: off by default (band-limit the human side first)"),
    Engine("gtts", "online-neural", ALL, "voicelib.data.sources.gtts", network=True),
    Engine("edge", "online-neural", ALL, "voicelib.data.sources.edge", network=True, row_engine="edge-neural"),
    Engine("piper", "online-neural", ("english", "hindi", "malayalam", "telugu"), "voicelib.data.sources.piper",
           network=True, note="rhasspy/piper-voices on the Hugging Face hub"),
    Engine("mms", "online-neural", ALL, "voicelib.data.sources.mms", network=True,
           note="facebook/mms-tts-<lang> on the Hugging Face hub (needs transformers)"),
)}


def get(name: str) -> Engine:
    """The engine called `name`; a ValueError lists the known names otherwise."""
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; choose from {', '.join(ENGINES)} (`python -m voicelib engines`)")
    return ENGINES[name]


def family_of(engine: str) -> str:
    """The family of a registered engine name, or "" when unknown."""
    return ENGINES[engine].family if engine in ENGINES else ""


def auto(language: str, *, vocoder: bool, network: bool | None = False) -> list[str]:
    """Default engines for `language`: installed, default-on, of the kind asked (network None: both)."""
    names = []
    for engine in ENGINES.values():
        if engine.vocoder != vocoder or not engine.default or (network is not None and engine.network != network):
            continue
        ok, why = engine.available(language)
        if ok:
            names.append(engine.name)
        elif language_name(language) in engine.languages:
            log.info("engine %s left out: %s", engine.name, why)
    return names


def listing(language: str | None = None) -> list[dict]:
    """One dict per engine: name, family, languages, network, vocoder, default, available, reason, note."""
    rows = []
    for engine in ENGINES.values():
        ok, why = engine.available(language)
        rows.append({"name": engine.name, "family": engine.family, "languages": list(engine.languages),
                     "network": engine.network, "vocoder": engine.vocoder, "default": engine.default,
                     "available": ok, "reason": why, "note": engine.note})
    return rows
