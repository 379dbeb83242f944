"""flite (Debian) clustergen voices and SVOX Pico (ttspico), English: real synthesis, install line when absent."""
from __future__ import annotations

import numpy as np
import pytest

from voicelib.data.sources import flite, pico
from voicelib.errors import SourceUnavailable


def test_flite_speaks_english(tmp_path, sample_texts, check_wave, check_rows):
    if not flite.available()[0]:
        pytest.skip("flite not installed (.ci/run)")
    wave, sr = flite.synthesize(sample_texts["en"], language="en", voice="awb")
    check_wave(wave, sr, rate=16000)
    assert np.array_equal(wave, flite.synthesize(sample_texts["en"], language="en", voice="awb")[0])
    slow, _ = flite.synthesize(sample_texts["en"], language="en", voice="awb", speed=1.3)
    assert len(slow) > len(wave) * 1.15  # the duration stretch works
    rows = flite.collect(tmp_path, language="english", texts=[sample_texts["en"]], seed=0)
    check_rows(rows, engine="flite", family="parametric", language="english")


def test_flite_absent_or_wrong_language(tmp_path, monkeypatch):
    assert flite.available("hindi") == (False, "flite speaks English only, not hindi")
    monkeypatch.setattr(flite, "missing", lambda programs, files=(): list(programs))
    assert flite.available() == (False, "flite is not installed; sudo apt-get install flite")
    with pytest.raises(SourceUnavailable, match="apt-get install flite"):
        flite.collect(tmp_path, language="english", texts=["hello"])


def test_pico_speaks_english(tmp_path, sample_texts, check_wave, check_rows):
    if not pico.available()[0]:
        pytest.skip("ttspico not installed")
    wave, sr = pico.synthesize(sample_texts["en"], language="en", voice="en-GB")
    check_wave(wave, sr, rate=16000)
    assert len(wave) == len(pico.synthesize(sample_texts["en"], language="en", voice="en-GB")[0])  # random excitation
    rows = pico.collect(tmp_path, language="english", texts=[sample_texts["en"]], seed=0)
    check_rows(rows, engine="pico", family="hmm", language="english")


def test_pico_absent_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(pico.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SourceUnavailable, match="pip install ttspico==0.3.2"):
        pico.collect(tmp_path, language="english", texts=["hello"])
