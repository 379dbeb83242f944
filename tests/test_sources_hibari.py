"""hibari from espeak-ng IPA: real synthesis in every language, seeded determinism, stored clips, missing package."""
from __future__ import annotations

import numpy as np
import pytest

from voicelib.data import espeak
from voicelib.data.sources import hibari
from voicelib.errors import SourceUnavailable

pytestmark = pytest.mark.skipif(not (hibari.available()[0] and espeak.is_available()),
                                reason="hibari-tts or espeak-ng not installed")


@pytest.mark.parametrize("code", ["en", "hi", "ta", "ml", "te"])
def test_speaks_every_language_deterministically_under_a_seed(code, sample_texts, check_wave):
    wave, sr = hibari.synthesize(sample_texts[code], language=code, seed=3)
    check_wave(wave, sr, rate=24000)
    assert np.array_equal(wave, hibari.synthesize(sample_texts[code], language=code, seed=3)[0])
    assert not np.array_equal(wave, hibari.synthesize(sample_texts[code], language=code, seed=4)[0])


def test_collect_stores_16k_clips(tmp_path, sample_texts, check_rows, edge_silence):
    rows = hibari.collect(tmp_path, language="telugu", texts=[sample_texts["te"]], seed=0)
    check_rows(rows, engine="hibari", family="neural", language="telugu")
    assert rows[0]["text"] == sample_texts["te"] and rows[0]["speaker"].startswith("hibari_te_")
    assert max(edge_silence(rows[0]["path"])) < 0.1  # the model's padding is trimmed: silence is no cue


def test_missing_package_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(hibari.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SourceUnavailable, match="pip install hibari-tts==0.2.1"):
        hibari.collect(tmp_path, language="hindi", texts=["नमस्ते"])


def test_long_sentences_are_spoken_whole(sample_texts, check_wave):
    text = " ".join([sample_texts["hi"]] * 6)  # longer than one model call takes
    assert len(hibari.ipa(text, "hi")) > hibari.MAX_PHONEMES
    short, sr = hibari.synthesize(sample_texts["hi"], language="hi", seed=0)
    long, _ = hibari.synthesize(text, language="hi", seed=0)
    check_wave(long, sr, rate=24000, max_seconds=60)
    assert len(long) > 4 * len(short)
