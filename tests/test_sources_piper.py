"""Piper voices from a local stand-in of the Hugging Face hub (HF_ENDPOINT, rhasspy/piper-voices' real layout).

The served voice is a tiny ONNX graph with Piper's inputs and outputs (a 220 Hz tone, 256 samples per
phoneme id), so download, resume, retries and piper-tts' own synthesis path are all exercised for real.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from voicelib.data.collect import CollectConfig, collect_all
from voicelib.data.sources import online, piper
from voicelib.errors import SourceUnavailable

pytestmark = pytest.mark.skipif(not piper.available()[0], reason="piper-tts not installed")
onnx = pytest.importorskip("onnx")
KEY = "hi_IN-test-medium"
MODEL = f"hi/hi_IN/test/medium/{KEY}.onnx"
TEXTS = ["आज मौसम अच्छा है।", "कल बारिश होगी।"]


def _tiny_model(hop: int = 256, freq: float = 220.0, sr: int = 16000) -> bytes:
    """An ONNX model with Piper's signature (input, input_lengths, scales -> output) that outputs a tone."""
    from onnx import TensorProto as T
    from onnx import helper

    nodes = [helper.make_node("Shape", ["input"], ["shape"]),
             helper.make_node("Gather", ["shape", "one"], ["n"], axis=0), helper.make_node("Mul", ["n", "hop"], ["t"]),
             helper.make_node("ConstantOfShape", ["t"], ["ones"], value=helper.make_tensor("v", T.FLOAT, [1], [1.0])),
             helper.make_node("CumSum", ["ones", "zero"], ["index"]),
             helper.make_node("Mul", ["index", "w"], ["phase"]),
             helper.make_node("Sin", ["phase"], ["sine"]), helper.make_node("Mul", ["sine", "amp"], ["audio"]),
             helper.make_node("Reshape", ["audio", "oshape"], ["output"])]
    inits = [helper.make_tensor("one", T.INT64, [1], [1]), helper.make_tensor("hop", T.INT64, [1], [hop]),
             helper.make_tensor("zero", T.INT64, [], [0]),
             helper.make_tensor("w", T.FLOAT, [], [2 * np.pi * freq / sr]),
             helper.make_tensor("amp", T.FLOAT, [], [0.3]), helper.make_tensor("oshape", T.INT64, [4], [1, 1, 1, -1])]
    graph = helper.make_graph(nodes, "tiny-piper", [helper.make_tensor_value_info("input", T.INT64, [1, None]),
                                                    helper.make_tensor_value_info("input_lengths", T.INT64, [1]),
                                                    helper.make_tensor_value_info("scales", T.FLOAT, [3])],
                              [helper.make_tensor_value_info("output", T.FLOAT, [1, 1, 1, None])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def _config() -> bytes:
    symbols = "aeiouəɪʊɛʌkgtdnmpbsrlhjvʈɖɳɾːˈˌ̃ ,.?"
    ids = {"_": [0], "^": [1], "$": [2], **{c: [10 + i] for i, c in enumerate(symbols)}}
    return json.dumps({"num_symbols": 64, "num_speakers": 1, "audio": {"sample_rate": 16000},
                       "espeak": {"voice": "hi"}, "phoneme_type": "espeak", "phoneme_id_map": ids}).encode()


def _catalog() -> bytes:
    entry = {"key": KEY, "name": "test", "quality": "medium",
             "language": {"code": "hi_IN", "family": "hi", "region": "IN"},
             "files": {MODEL: {"size_bytes": 1}, MODEL + ".json": {"size_bytes": 1}}}
    english = {"key": "en_US-x-low", "name": "x", "quality": "low", "language": {"code": "en_US", "family": "en"},
               "files": {}}
    return json.dumps({KEY: entry, "en_US-x-low": english}).encode()


@pytest.fixture
def hub(hub_standin):
    """The stand-in hub with voices.json and one Hindi voice."""
    return hub_standin(piper.REPO, {"voices.json": _catalog(), MODEL: _tiny_model(), MODEL + ".json": _config()})


def test_voices_for_picks_language_and_quality():
    catalog = json.loads(_catalog())
    catalog["hi_IN-test-low"] = {**catalog[KEY], "quality": "low"}
    assert piper.voices_for(catalog, "hindi") == [KEY] and piper.voices_for(catalog, "tamil") == []
    assert piper.voice_files("en_US-x-low", catalog["en_US-x-low"]) == ("en/en_US/x/low/en_US-x-low.onnx",
                                                                       "en/en_US/x/low/en_US-x-low.onnx.json")


def test_downloads_a_voice_and_synthesises_with_piper(tmp_path, hub, check_rows):
    out = tmp_path / "audio" / "piper"
    rows = piper.collect(out, language="hindi", texts=TEXTS, seed=0, cache_dir=hub.cache, retries=0)
    check_rows(rows, engine="piper", family="online-neural", language="hindi")
    assert sorted(r["text"] for r in rows) == sorted(TEXTS) and all(r["voice"].startswith("hi:" + KEY) for r in rows)
    assert all(r["duration"] > 0.2 for r in rows)
    assert ("GET", MODEL, "") in hub.log
    hub.log.clear()
    assert piper.collect(out, language="hindi", texts=TEXTS, seed=0, cache_dir=hub.cache, retries=0) == rows
    assert not any(cmd == "GET" and name == MODEL for cmd, name, _ in hub.log)  # cached: not fetched again


def test_partial_model_download_is_resumed_and_transient_errors_retried(tmp_path, hub):
    data = hub.files[MODEL]
    blobs = hub.cache / "models--rhasspy--piper-voices" / "blobs"
    blobs.mkdir(parents=True)
    (blobs / f"{hashlib.sha256(data).hexdigest()}.incomplete").write_bytes(data[: len(data) // 2])
    hub.fail_first = {"voices.json": 1}
    rows = piper.collect(tmp_path / "out", language="hindi", texts=TEXTS[:1], seed=0, cache_dir=hub.cache, retries=2,
                         backoff=0.01)
    assert len(rows) == 1
    assert ("GET", MODEL, f"bytes={len(data) // 2}-") in hub.log


def test_missing_voice_file_and_unreachable_hub_hand_texts_back(tmp_path, hub, free_port):
    del hub.files[MODEL]
    with pytest.raises(online.PartialCollection, match=f"{MODEL} not found") as info:
        piper.collect(tmp_path / "a", language="hindi", texts=TEXTS, seed=0, cache_dir=hub.cache, retries=0)
    assert info.value.remaining == TEXTS and info.value.rows == []
    with pytest.raises(SourceUnavailable, match="Piper download of voices.json"):
        piper.collect(tmp_path / "b", language="hindi", texts=TEXTS, seed=0,
                      endpoint=f"http://127.0.0.1:{free_port()}", cache_dir=tmp_path / "c", retries=0, timeout=2)


def test_collect_all_falls_back_to_espeak_when_the_hub_is_down(tmp_path, speech_file, monkeypatch, free_port):
    online.forget_said()
    root = tmp_path / "mine"
    (root / "hindi" / "human").mkdir(parents=True)
    for i, text in enumerate(TEXTS):
        speech_file(f"spk_{i}.wav", language="hi", text=text).rename(root / "hindi" / "human" / f"spk_{i}.wav")
    lines = "".join(f"hindi/human/spk_{i}.wav,{t}\n" for i, t in enumerate(TEXTS))
    (root / "manifest.csv").write_text("path,text\n" + lines, encoding="utf-8")
    options = {"piper": {"endpoint": f"http://127.0.0.1:{free_port()}", "retries": 0, "timeout": 2,
                         "cache_dir": str(tmp_path / "c")}}
    df = collect_all(tmp_path / "data", CollectConfig(human_sources=[], tts_engines=["piper"], local_dirs=[root],
                                                      seed=0, options=options, workers=1), language="hindi")
    ai = df[df["label"] == "ai"]
    assert set(ai["engine"]) == {"espeak-ng"} and sorted(ai["text"]) == sorted(TEXTS)
    assert (tmp_path / "data" / "collect_state" / "last_run.json").read_text().count("piper unreachable") == 1


def test_missing_package_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(piper.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SourceUnavailable, match="pip install piper-tts==1.8.0"):
        piper.collect(tmp_path, language="hindi", texts=TEXTS)
