"""The shipped prompt lists: at least 100 unique sentences per language, in the language's own script."""
from __future__ import annotations

import pytest

from voicelib.data.sources.clips import TEXTS_DIR, choose_texts, prompts

SCRIPTS = {"hi": (0x0900, 0x097F), "ta": (0x0B80, 0x0BFF), "ml": (0x0D00, 0x0D7F), "te": (0x0C00, 0x0C7F)}


@pytest.mark.parametrize("code", ["en", "hi", "ta", "ml", "te"])
def test_prompt_list_has_100_unique_sentences_in_its_script(code):
    lines = (TEXTS_DIR / f"{code}.txt").read_text(encoding="utf-8").splitlines()
    sentences = [line.strip() for line in lines if line.strip()]
    assert len(sentences) >= 100 and len(set(sentences)) == len(sentences)
    for sentence in sentences:
        letters = [ch for ch in sentence if ch.isalpha()]
        if code == "en":
            assert all(ch.isascii() for ch in letters), sentence
        else:
            low, high = SCRIPTS[code]
            native = sum(low <= ord(ch) <= high for ch in letters)
            assert native == len(letters), sentence  # no stray Latin or other-script letters
    assert prompts(code) == sentences


def test_choose_texts_is_seeded_and_limited():
    a = choose_texts(None, language="hindi", limit=5, seed=1)
    assert a == choose_texts(None, language="hi", limit=5, seed=1) and len(a) == 5
    assert a != choose_texts(None, language="hindi", limit=5, seed=2)
    assert choose_texts(["a  b", "a b", "", "c"], language="en", limit=None, seed=0) == ["a b", "c"]
    with pytest.raises(ValueError, match="negative"):
        choose_texts(None, language="en", limit=-1, seed=0)
