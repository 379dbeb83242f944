"""Vocoded copies of human clips: each vocoder resynthesises speech, and copies keep speaker, group, text and split."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from voicelib.data import splits
from voicelib.data.collect import CollectConfig, collect_all
from voicelib.data.sources import codec2, griffinlim, mlsa, vocode, world
from voicelib.data.sources.engines import ENGINES


@pytest.fixture
def clip(speech_file):
    """A short Hindi espeak-ng utterance stored at 16 kHz."""
    return speech_file("source.flac", language="hi", text="आज मौसम अच्छा है।")


@pytest.mark.parametrize("name", ["world-harvest", "world-dio", "world-coded", "mlsa", "griffin-lim"])
def test_vocoders_resynthesise_deterministically(name, clip, check_wave):
    engine = ENGINES[name]
    if not engine.available()[0]:
        pytest.skip(engine.available()[1])
    module = engine.load()
    wave, sr = module.synthesize(source=str(clip), seed=1, **engine.args)
    source = sf.read(clip, dtype="float32")[0]
    check_wave(wave, sr, rate=16000)
    assert abs(len(wave) - len(source)) <= 160 and not np.array_equal(wave[: len(source)], source[: len(wave)])
    assert np.array_equal(wave, module.synthesize(source=str(clip), seed=1, **engine.args)[0])


def test_world_variants_differ(clip):
    if not world.available()[0]:
        pytest.skip(world.available()[1])
    harvest = world.synthesize(source=str(clip), variant="harvest")[0]
    coded = world.synthesize(source=str(clip), variant="coded")[0]
    assert len(harvest) == len(coded) and not np.allclose(harvest, coded, atol=1e-3)
    with pytest.raises(ValueError, match="unknown variant"):
        world.resynthesize(np.zeros(1600), 16000, variant="nope")


def test_codec2_is_8k(clip, check_wave):
    if not codec2.available()[0]:
        pytest.skip(codec2.available()[1])
    wave, sr = codec2.synthesize(source=str(clip))
    check_wave(wave, sr, rate=8000)
    assert not ENGINES["codec2"].default  # narrow band: never in "auto"


def test_absent_vocoders_say_how_to_install(monkeypatch):
    monkeypatch.setattr(world.importlib.util, "find_spec", lambda name: None)
    assert world.available() == (False, "pyworld is not installed; pip install pyworld-prebuilt==0.3.6.post1")
    assert mlsa.available()[1].startswith("pysptk is not installed; pip install pysptk==1.0.1")
    monkeypatch.setattr(codec2, "missing", lambda programs, files=(): list(programs))
    assert codec2.available() == (False, "codec2 is not installed; sudo apt-get install codec2")
    assert griffinlim.available() == (True, "")


def test_choose_is_deterministic_and_distinct():
    names = ["a", "b", "c", "d"]
    picked = vocode.choose("/x/clip1.wav", names, 2, seed=0)
    assert picked == vocode.choose("/y/clip1.wav", names, 2, seed=0) and len(set(picked)) == 2
    assert vocode.choose("/x/clip1.wav", names, 9, seed=0) == names
    assert {tuple(vocode.choose(f"c{i}", names, 1, seed=0)) for i in range(20)} != {tuple(picked[:1])}


@pytest.fixture
def folder(tmp_path, speech_file):
    """<root>/hindi/human: 6 transcribed clips by 3 speakers."""
    root = tmp_path / "mine"
    human = root / "hindi" / "human"
    human.mkdir(parents=True)
    texts = ["आज मौसम अच्छा है।", "कल बारिश होगी।", "हम बाज़ार जा रहे हैं।", "चाय ठंडी हो गई।", "वह घर गया।",
             "बच्चे खेल रहे हैं।"]
    for i, text in enumerate(texts):
        speech_file(f"x{i}.wav", language="hi", text=text, variant=("m3", "f2", "m1")[i % 3]).rename(
            human / f"spk{i % 3}_{i}.wav")
    lines = [f"hindi/human/spk{i % 3}_{i}.wav,{t}" for i, t in enumerate(texts)]
    (root / "manifest.csv").write_text("path,text\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_vocoded_copies_keep_their_source_and_split(tmp_path, folder, check_rows):
    if not world.available()[0]:
        pytest.skip(world.available()[1])
    config = CollectConfig(human_sources=[], tts_engines=["espeak"], vocoders=["world-dio", "griffin-lim"],
                           vocoders_per_clip=2, local_dirs=[folder], seed=0, workers=1)
    df = collect_all(tmp_path / "data", config, language="hindi")
    copies = df[df["source"] == "vocoded"]
    check_rows(copies.to_dict("records")[:1], engine=copies["engine"].iloc[0], family="vocoder", language="hindi")
    assert len(copies) == 12 and set(copies["engine"]) == {"world-dio", "griffin-lim"}
    human = df[df["label"] == "human"].set_index("path")
    for column in ("speaker", "group", "text", "language"):
        assert (copies[column].to_numpy() == human.loc[copies["source_path"], column].to_numpy()).all()
    split = splits.assign_splits(df, seed=0, val_fraction=0.25, test_fraction=0.25)
    splits.check_leakage(split)
    where = split.set_index("path")["split"]
    vocoded = split[split["source"] == "vocoded"]
    assert (vocoded["split"].to_numpy() == where.loc[vocoded["source_path"]].to_numpy()).all()
    assert set(vocoded["split"]) - {"excluded"}
