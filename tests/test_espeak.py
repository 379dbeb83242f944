"""Tests for voicelib.data.espeak: the five languages speak, options change the voice, output is repeatable."""
from __future__ import annotations

import threading

import librosa
import numpy as np
import pytest

from voicelib.data import espeak
from voicelib.errors import SourceUnavailable

pytestmark = pytest.mark.skipif(not espeak.is_available(), reason="espeak-ng library not available")


def voiced_seconds(wave: np.ndarray, sr: int) -> float:
    """Seconds of 10 ms frames within 40 dB of the loudest frame."""
    frames = wave[: len(wave) // (sr // 100) * (sr // 100)].reshape(-1, sr // 100)
    level = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    return float(np.sum(level > level.max() - 40) / 100)


@pytest.mark.parametrize("language", ["en", "hi", "ta", "ml", "te"])
def test_each_language_speaks(language, sample_texts):
    wave, sr = espeak.synthesize(sample_texts[language], language=language)
    assert wave.dtype == np.float32 and wave.ndim == 1 and sr == 22050
    assert 0.05 < np.abs(wave).max() <= 1.0
    assert voiced_seconds(wave, sr) > 1.0  # a sentence, not a beep or silence


def test_same_input_same_speech():
    # espeak-ng carries pitch-flutter state between utterances, so repeats match in length, not bit for bit
    first, sr = espeak.synthesize("Repeatable output, please.", variant="f2")
    espeak.synthesize("Something else in between.", language="hi", variant="m3", pitch=80)
    again, _ = espeak.synthesize("Repeatable output, please.", variant="f2")
    assert abs(len(first) - len(again)) < 0.03 * len(first)
    assert abs(voiced_seconds(first, sr) - voiced_seconds(again, sr)) < 0.1


def test_rate_and_pitch_change_the_voice():
    text = "Counting one two three four five."
    slow, sr = espeak.synthesize(text, rate=100)
    fast, _ = espeak.synthesize(text, rate=300)
    assert len(slow) > 2 * len(fast)
    low, _ = espeak.synthesize(text, pitch=10)
    high, _ = espeak.synthesize(text, pitch=90)
    f0_low, f0_high = (float(np.median(librosa.yin(w, fmin=50, fmax=500, sr=sr))) for w in (low, high))
    assert f0_high > 1.3 * f0_low


def test_variants(sample_texts):
    names = espeak.voices("hi")
    assert {"m1", "f2"} <= set(names)
    male, _ = espeak.synthesize(sample_texts["hi"], language="hi", variant="m1")
    female, _ = espeak.synthesize(sample_texts["hi"], language="hi", variant="f2")
    assert not np.array_equal(male[: len(female)], female[: len(male)])


def test_bad_requests():
    with pytest.raises(ValueError, match="'xx'"):
        espeak.synthesize("hello", language="xx")
    with pytest.raises(ValueError, match="voices"):
        espeak.synthesize("hello", variant="no-such-voice")
    with pytest.raises(ValueError, match="empty"):
        espeak.synthesize("   ")
    with pytest.raises(ValueError, match="rate"):
        espeak.synthesize("hello", rate=10)
    with pytest.raises(ValueError, match="'xx'"):
        espeak.voices("xx")


def test_threads_do_not_mix_output():
    expected, _ = espeak.synthesize("Thread safety matters.")
    results: list[np.ndarray] = []
    threads = [threading.Thread(target=lambda: results.append(espeak.synthesize("Thread safety matters.")[0]))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4 and all(abs(len(r) - len(expected)) < 0.03 * len(expected) for r in results)


def test_missing_library_is_reported(monkeypatch):
    import espeakng_loader

    monkeypatch.setattr(espeak, "_state", {})  # as in a fresh process
    monkeypatch.setattr(espeakng_loader, "get_library_path", lambda: "/nonexistent/libespeak-ng.so")
    assert espeak.is_available() is False
    with pytest.raises(SourceUnavailable, match="espeakng-loader"):
        espeak.synthesize("hello")
