"""collect_all: human folders first, AI speaking the same sentences, validation, idempotent re-runs."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from voicelib.data import espeak as engine
from voicelib.data import manifest, splits
from voicelib.data.collect import CollectConfig, collect_all
from voicelib.errors import DataError

pytestmark = pytest.mark.skipif(not engine.is_available(), reason="espeak-ng (espeakng-loader) is not available")
TEXTS = ["आज मौसम अच्छा है।", "कल बारिश होगी।", "हम बाज़ार जा रहे हैं।", "चाय ठंडी हो गई।"]


@pytest.fixture
def user_folder(tmp_path, speech_file):
    """<root>/hindi/human with 4 transcribed clips by two speakers, a silent one and a byte-identical copy."""
    root = tmp_path / "mine"
    human = root / "hindi" / "human"
    human.mkdir(parents=True)
    for i, text in enumerate(TEXTS):
        speech_file(f"x{i}.wav", language="hi", text=text,
                    variant="m3" if i % 2 else "f2").rename(human / f"spk{i % 2}_{i}.wav")
    sf.write(human / "spk9_9.wav", np.zeros(16000, np.float32), 16000)
    (human / "spk9_10.wav").write_bytes((human / "spk0_0.wav").read_bytes())
    lines = [f"hindi/human/spk{i % 2}_{i}.wav,{text}" for i, text in enumerate(TEXTS)]
    (root / "manifest.csv").write_text("path,text\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return root


def _files(root):
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_collect_all_matches_content_validates_and_is_idempotent(tmp_path, user_folder):
    before = _files(user_folder)
    data = tmp_path / "data"
    df = collect_all(data, CollectConfig(human_sources=[], tts_engines=["espeak"], local_dirs=[user_folder], seed=0),
                     language="hindi")
    assert _files(user_folder) == before  # the user's files are never modified, moved or copied
    assert sorted(df.loc[df.label == "ai", "text"]) == sorted(TEXTS)  # the AI side speaks the human sentences
    assert (df.label == "human").sum() == 4 and set(df.loc[df.label == "ai", "engine"]) == {"espeak-ng"}
    quarantine = manifest.read_manifest(data / "quarantine.csv")
    reasons = dict(zip(quarantine["path"].str.rsplit("/", n=1).str[1], quarantine["reason"]))
    assert "silent" in reasons["spk9_9.wav"] and reasons["spk9_10.wav"].startswith("duplicate of")
    first = (data / "manifest.csv").read_text(encoding="utf-8")
    again = collect_all(data, CollectConfig(human_sources=[], tts_engines=["espeak"], local_dirs=[user_folder],
                                            seed=0), language="hindi")
    assert (data / "manifest.csv").read_text(encoding="utf-8") == first and len(again) == len(df)
    assert not list(data.glob("*.bak"))  # nothing changed, nothing rewritten
    assert (data / "collect_state" / "last_run.json").is_file()
    split = splits.assign_splits(manifest.read_manifest(data / "manifest.csv"), seed=0, val_fraction=0.25,
                                   test_fraction=0.25)
    splits.check_leakage(split)


def test_collect_all_without_human_speech_says_how_to_fix(tmp_path):
    with pytest.raises(DataError, match=r"hindi/human/\*\.wav.*local_dirs"):
        collect_all(tmp_path / "data", CollectConfig(human_sources=[], tts_engines=["espeak"], limit=2, seed=0),
                    language="hindi")
    assert len(manifest.read_manifest(tmp_path / "data" / "manifest.csv")) == 2  # the AI clips made are kept


def test_unknown_engine_is_refused(tmp_path, user_folder):
    with pytest.raises(ValueError, match="unknown TTS engine 'nosuch'"):
        collect_all(tmp_path / "d", CollectConfig(human_sources=[], tts_engines=["nosuch"],
                                                  local_dirs=[user_folder]), language="hindi")


def test_real_hindi_folder_gives_both_classes_and_clean_splits(tmp_path, shared_speech):
    df = collect_all(tmp_path / "data", CollectConfig(human_sources=[], tts_engines=["espeak"],
                                                      local_dirs=[shared_speech], limit=12, seed=0), language="hindi")
    assert set(df["label"]) == {"human", "ai"} and "espeak-ng" in set(df["engine"])
    assert all(str(shared_speech.resolve()) in p for p in df.loc[df.label == "human", "path"])  # read in place
    texts = set(df.loc[(df.label == "human") & (df.text != ""), "text"])
    assert texts and texts <= set(df.loc[df.engine == "espeak-ng", "text"])
    split = splits.assign_splits(df, seed=0)
    splits.check_leakage(split)
    assert isinstance(manifest.summary(split), pd.DataFrame)
