"""Offline speech synthesis through the espeak-ng shared library shipped by `espeakng_loader`."""
from __future__ import annotations

import ctypes
import logging
import threading
from pathlib import Path

import numpy as np

from voicelib.errors import SourceUnavailable

log = logging.getLogger(__name__)

# speak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_ESPEAK_RATE = 1
_ESPEAK_PITCH = 3
_EE_OK = 0
_PHONEMES_IPA = 0x02  # espeak_TextToPhonemes phonememode bit 1: IPA as UTF-8
_FIX = "reinstall it with `.venv/bin/pip install --force-reinstall espeakng-loader==0.2.4`"

# int callback(short *wav, int numsamples, espeak_EVENT *events); events are not parsed here
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

_lock = threading.Lock()  # espeak-ng keeps global state and is not thread-safe
_chunks: list[np.ndarray] = []
_state: dict = {}  # the loaded library: lib, sample_rate, data_path


def _collect(wav, numsamples, events) -> int:  # noqa: ARG001 - signature fixed by espeak-ng
    """Append one buffer of int16 samples delivered by espeak-ng; return 0 to continue."""
    if wav and numsamples > 0:
        _chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
    return 0


_CALLBACK_REF = _CALLBACK(_collect)  # module-level so it is never garbage-collected


def _paths() -> tuple[str, Path]:
    """Return (shared library path, data folder) from espeakng_loader."""
    try:
        import espeakng_loader

        return espeakng_loader.get_library_path(), Path(espeakng_loader.get_data_path())
    except (ImportError, RuntimeError) as exc:
        raise SourceUnavailable(f"espeak-ng: espeakng_loader is missing or broken ({exc}); {_FIX}") from exc


def _library() -> dict:
    """Load and initialise the library once per process (hold `_lock`); return lib, rate, data path.

    One instance for the life of the process: reloading it per call would reset espeak-ng's pitch
    flutter state (making output bit-repeatable) but leaks ~180 kB per call in espeak-ng 1.52.
    """
    if _state:
        return _state
    lib_path, data_path = _paths()
    try:
        lib = ctypes.CDLL(lib_path)
    except OSError as exc:
        raise SourceUnavailable(f"espeak-ng: cannot load {lib_path} ({exc}); {_FIX}") from exc
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
    lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                 ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    sample_rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, str(data_path).encode(), 0)
    if sample_rate <= 0:
        raise SourceUnavailable(f"espeak-ng: espeak_Initialize failed with data at {data_path}; {_FIX}")
    lib.espeak_SetSynthCallback(_CALLBACK_REF)
    lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int]
    lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
    _state.update(lib=lib, sample_rate=int(sample_rate), data_path=data_path)
    log.debug("espeak-ng initialised: %d Hz, data %s", sample_rate, data_path)
    return _state


def is_available() -> bool:
    """Return True when the espeak-ng library loads and initialises."""
    try:
        with _lock:
            _library()
        return True
    except SourceUnavailable:
        return False


def _has_language(data_path: Path, language: str) -> bool:
    """Return True when espeak-ng ships a dictionary for `language` (an ISO code such as "hi")."""
    return bool(language) and (data_path / f"{language.split('-')[0]}_dict").is_file()


def voices(language: str) -> list[str]:
    """Return the voice variants (e.g. "m1", "f2") usable as `variant=` for `language`."""
    _, data_path = _paths()
    if not _has_language(data_path, language):
        raise ValueError(f"espeak-ng has no voice for language {language!r}; "
                         "use an ISO code such as en, hi, ta, ml, te")
    folder = data_path / "voices" / "!v"
    names = [p.name for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []
    classic = [n for n in names if len(n) == 2 and n[0] in "mf" and n[1].isdigit()]
    return sorted(classic, key=lambda n: (n[0] != "m", n))


def synthesize(text: str, *, language: str = "en", variant: str | None = None, pitch: int = 50,
               rate: int = 175) -> tuple[np.ndarray, int]:
    """Speak `text` with espeak-ng; return (float32 mono wave in [-1, 1], sample rate)."""
    if not text or not text.strip():
        raise ValueError("espeak-ng: empty text; pass at least one word to synthesize")
    if not 0 <= pitch <= 100:
        raise ValueError(f"espeak-ng: pitch {pitch} out of range; use 0..100 (50 is normal)")
    if not 80 <= rate <= 450:
        raise ValueError(f"espeak-ng: rate {rate} out of range; use 80..450 words per minute")
    name = f"{language}+{variant}" if variant else language
    with _lock:
        state = _library()
        lib, sample_rate, data_path = state["lib"], state["sample_rate"], state["data_path"]
        if not _has_language(data_path, language):
            raise ValueError(f"espeak-ng has no voice for language {language!r}; use en, hi, ta, ml or te")
        if variant and not (data_path / "voices" / "!v" / variant).is_file():
            raise ValueError(f"espeak-ng: unknown variant {variant!r}; "
                             f"pick one from voicelib.data.espeak.voices({language!r})")
        if lib.espeak_SetVoiceByName(name.encode()) != _EE_OK:
            raise ValueError(f"espeak-ng: unknown voice {name!r}; "
                             f"pick a variant from voicelib.data.espeak.voices({language!r})")
        lib.espeak_SetParameter(_ESPEAK_RATE, int(rate), 0)
        lib.espeak_SetParameter(_ESPEAK_PITCH, int(pitch), 0)
        _chunks.clear()
        data = text.encode("utf-8")
        err = lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None)
        lib.espeak_Synchronize()
        chunks = list(_chunks)
        _chunks.clear()
    log.debug("espeak-ng %s: %d chars -> %d buffers", name, len(text), len(chunks))
    if err != _EE_OK or not chunks:
        raise SourceUnavailable(f"espeak-ng: synthesis failed (error {err}) for voice {name!r}; {_FIX}")
    return np.concatenate(chunks).astype(np.float32) / np.float32(32768.0), sample_rate


def phonemize(text: str, language: str = "en", *, separator: str = " ") -> str:
    """Return espeak-ng's IPA for `text` in `language` (an ISO code), clauses joined by `separator`."""
    if not text or not text.strip():
        raise ValueError("espeak-ng: empty text; pass at least one word to phonemize")
    with _lock:
        state = _library()
        lib, data_path = state["lib"], state["data_path"]
        if not _has_language(data_path, language):
            raise ValueError(f"espeak-ng has no voice for language {language!r}; use en, hi, ta, ml or te")
        if lib.espeak_SetVoiceByName(language.encode()) != _EE_OK:
            raise ValueError(f"espeak-ng: unknown voice {language!r}; use en, hi, ta, ml or te")
        buffer = ctypes.create_string_buffer(text.encode("utf-8"))
        pointer = ctypes.c_char_p(ctypes.addressof(buffer))
        clauses = []
        while pointer.value:  # each call returns one clause and moves the pointer on (NULL at the end)
            out = lib.espeak_TextToPhonemes(ctypes.byref(pointer), _ESPEAK_CHARS_UTF8, _PHONEMES_IPA)
            if out:
                clauses.append(out.decode("utf-8", errors="replace").strip())
    return separator.join(c for c in clauses if c)
