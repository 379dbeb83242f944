"""Festival (Debian): Hindi/Telugu NSK diphone and English HTS voices, and the install line when absent."""
from __future__ import annotations

import pytest

from voicelib.data.sources import festival, festival_hts
from voicelib.errors import SourceUnavailable

needs = pytest.mark.skipif(not festival.available("hindi")[0], reason="festival festvox-hi-nsk not installed (.ci/run)")


@needs
@pytest.mark.parametrize("code,voice", [("hi", "hindi_NSK_diphone"), ("te", "telugu_NSK_diphone")])
def test_indic_diphone_voices_speak(code, voice, sample_texts, check_wave):
    if voice not in festival.installed_voices(code):
        pytest.skip(f"{voice} not installed")
    wave, sr = festival.synthesize(sample_texts[code], language=code, voice=voice)
    check_wave(wave, sr, rate=16000)
    assert (wave == festival.synthesize(sample_texts[code], language=code, voice=voice)[0]).all()


@needs
def test_collect_hindi_stores_16k_clips(tmp_path, sample_texts, check_rows):
    rows = festival.collect(tmp_path, language="hindi", texts=[sample_texts["hi"]], seed=0)
    check_rows(rows, engine="festival", family="diphone", language="hindi")


def test_hts_voice_speaks_english(tmp_path, sample_texts, check_wave, check_rows):
    if not festival_hts.available("english")[0]:
        pytest.skip("festvox-us-slt-hts not installed (.ci/run)")
    wave, sr = festival_hts.synthesize(sample_texts["en"], language="en", voice="cmu_us_slt_arctic_hts")
    check_wave(wave, sr, rate=32000)
    rows = festival_hts.collect(tmp_path, language="english", texts=[sample_texts["en"]], seed=0)
    check_rows(rows, engine="festival-hts", family="hmm", language="english")


def test_absent_festival_says_how_to_install(tmp_path, monkeypatch):
    assert not festival.available("tamil")[0]  # no Tamil voice is packaged
    monkeypatch.setattr(festival, "missing", lambda programs, files=(): list(programs) + list(files))
    ok, why = festival.available("hindi")
    assert not ok and why.startswith("Festival is not installed; sudo apt-get install festival")
    assert "festvox-hi-nsk" in why
    with pytest.raises(SourceUnavailable, match="apt-get install festival"):
        festival.collect(tmp_path, language="hindi", texts=["नमस्ते"])


def test_an_indic_voice_without_its_language_support_is_not_offered(monkeypatch):
    """festvox-hi-nsk without festival-hi (a Recommends) fails on every clip: it must count as not installed."""
    monkeypatch.setattr(festival, "missing", lambda programs, files=(): [f for f in files if f.endswith("_scm")])
    assert festival.installed_voices("hindi") == [] and festival.installed_voices("english") == ["kal_diphone"]
    ok, why = festival.available("hindi")
    assert not ok and "festival-hi" in why and "festvox-hi-nsk" in why
