"""Fixtures shared by the whole test suite.

Audio is generated, never downloaded; every fixture is deterministic.

- `make_speech(text=None, *, language="en", sr=16000, variant=None) -> (wave, sr)`: session-scoped,
  cached factory of espeak-ng utterances (fresh writable float32 mono copies); `text=None` uses
  `SAMPLE_TEXTS[language]`.
  Skips the test when espeak-ng cannot load.
- `speech -> (wave, sr)`: one English espeak-ng utterance at 16 kHz (about 2.5 s).
- `speech_file(name="speech.wav", *, language="en", text=None, sr=16000, variant=None, channels=1)
  -> Path`: writes an utterance into the test's `tmp_path`; the extension picks the format
  (wav, flac, mp3, ogg, opus); `channels=2` writes the same voice on both channels.
- `make_tone(freq=440.0, *, duration=1.0, sr=16000, amplitude=0.3) -> np.ndarray` (float32 sine).
- `make_noise(*, duration=1.0, sr=16000, amplitude=0.1, seed=0) -> np.ndarray` (float32 Gaussian).
- `shared_speech -> Path`: the real labelled corpus (../shared/speech beside the checkout, or
  $VOICELIB_SHARED_SPEECH); the test is skipped when it is absent. Read it in place, never copy it.
- `sample_texts -> dict[str, str]`: one short sentence per language code (en, hi, ta, ml, te).
- `one_torch_thread`: runs the test with one torch thread (use with `pytest.mark.usefixtures`).
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest

SAMPLE_TEXTS = {
    "en": "The quick brown fox jumps over the lazy dog near the river bank.",
    "hi": "आज मौसम बहुत अच्छा है और हम बाज़ार जा रहे हैं।",
    "ta": "இன்று வானிலை மிகவும் நன்றாக இருக்கிறது, நாங்கள் சந்தைக்குச் செல்கிறோம்.",
    "ml": "ഇന്ന് കാലാവസ്ഥ വളരെ നല്ലതാണ്, ഞങ്ങൾ ചന്തയിലേക്ക് പോകുന്നു.",
    "te": "ఈ రోజు వాతావరణం చాలా బాగుంది, మేము మార్కెట్‌కు వెళ్తున్నాము.",
}
SAVE_SUBTYPES = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".mp3": ("MP3", "MPEG_LAYER_III"),
                 ".ogg": ("OGG", "VORBIS"), ".opus": ("OGG", "OPUS")}


def shared_speech_root() -> Path:
    """Return where the shared speech corpus should be (it may not exist)."""
    env = os.environ.get("VOICELIB_SHARED_SPEECH")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "speech"


@functools.lru_cache(maxsize=64)
def _espeak_utterance(text: str, language: str, sr: int, variant: str | None) -> tuple[np.ndarray, int]:
    """Synthesize and resample one utterance (cached for the session)."""
    import soxr

    from voicelib.data import espeak

    wave, native = espeak.synthesize(text, language=language, variant=variant)
    if native != sr:
        wave = soxr.resample(wave, native, sr, quality="HQ").astype(np.float32)
    wave.setflags(write=False)  # shared between tests: nobody may modify it in place
    return wave, sr


@pytest.fixture(scope="session")
def make_speech() -> Callable[..., tuple[np.ndarray, int]]:
    """Factory of cached espeak-ng utterances: (float32 wave, sr)."""
    from voicelib.data import espeak

    if not espeak.is_available():
        pytest.skip("espeak-ng library (pip package espeakng-loader) is not available")

    def make(text: str | None = None, *, language: str = "en", sr: int = 16000,
             variant: str | None = None) -> tuple[np.ndarray, int]:
        wave, rate = _espeak_utterance(text or SAMPLE_TEXTS[language], language, sr, variant)
        return wave.copy(), rate  # a fresh writable copy: no test can spoil the cache for another

    return make


@pytest.fixture
def speech(make_speech) -> tuple[np.ndarray, int]:
    """One English espeak-ng utterance at 16 kHz."""
    return make_speech()


@pytest.fixture
def speech_file(tmp_path, make_speech) -> Callable[..., Path]:
    """Factory writing an espeak-ng utterance into tmp_path in the format named by the extension."""
    import soundfile as sf

    def write(name: str = "speech.wav", *, language: str = "en", text: str | None = None, sr: int = 16000,
              variant: str | None = None, channels: int = 1) -> Path:
        wave, _ = make_speech(text, language=language, sr=sr, variant=variant)
        data = np.stack([wave] * channels, axis=1) if channels > 1 else wave
        path = tmp_path / name
        fmt, subtype = SAVE_SUBTYPES[path.suffix.lower()]
        sf.write(str(path), data, sr, format=fmt, subtype=subtype)
        return path

    return write


@pytest.fixture(scope="session")
def make_tone() -> Callable[..., np.ndarray]:
    """Factory of float32 sine tones."""
    def tone(freq: float = 440.0, *, duration: float = 1.0, sr: int = 16000, amplitude: float = 0.3) -> np.ndarray:
        t = np.arange(int(round(duration * sr))) / sr
        return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)

    return tone


@pytest.fixture(scope="session")
def make_noise() -> Callable[..., np.ndarray]:
    """Factory of seeded float32 Gaussian noise."""
    def noise(*, duration: float = 1.0, sr: int = 16000, amplitude: float = 0.1, seed: int = 0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return (amplitude * rng.standard_normal(int(round(duration * sr)))).astype(np.float32)

    return noise


@pytest.fixture(scope="session")
def sample_texts() -> dict[str, str]:
    """One short sentence per language code (en, hi, ta, ml, te)."""
    return dict(SAMPLE_TEXTS)


@pytest.fixture(scope="session")
def shared_speech() -> Path:
    """Path of the shared labelled speech corpus, or skip the test when it is absent."""
    root = shared_speech_root()
    if not (root / "manifest.csv").is_file():
        pytest.skip(f"shared speech corpus not found at {root} (set VOICELIB_SHARED_SPEECH to its folder)")
    return root


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Run a test with one torch thread: tiny networks run fastest and most repeatably so on a busy machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
