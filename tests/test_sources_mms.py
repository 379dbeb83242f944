"""MMS-TTS (optional, needs transformers) from a stand-in hub serving a tiny random VITS model in the real layout."""
from __future__ import annotations

import json

import numpy as np
import pytest

from voicelib.data.sources import mms, online
from voicelib.errors import SourceUnavailable

pytestmark = pytest.mark.skipif(not mms.available()[0], reason="transformers not installed (MMS-TTS is optional)")
TEXTS = ["आज मौसम अच्छा है।", "कल बारिश होगी।"]
REPO = mms.REPOS["hi"]


@pytest.fixture(scope="module")
def model_files(tmp_path_factory) -> dict[str, bytes]:
    """A randomly initialised, tiny VITS model and a character vocabulary, as save_pretrained writes them."""
    import torch
    from transformers import VitsConfig, VitsModel

    folder = tmp_path_factory.mktemp("tiny-mms")
    config = VitsConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, ffn_dim=32,
                        flow_size=16, spectrogram_bins=33, upsample_initial_channel=16, upsample_rates=[8, 8],
                        upsample_kernel_sizes=[16, 16], resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]],
                        prior_encoder_num_flows=1, prior_encoder_num_wavenet_layers=1,
                        posterior_encoder_num_wavenet_layers=1, duration_predictor_flow_bins=2,
                        duration_predictor_filter_channels=16, depth_separable_num_layers=1,
                        duration_predictor_num_flows=1, sampling_rate=16000)
    torch.manual_seed(0)
    VitsModel(config).save_pretrained(folder)
    chars = sorted(set("".join(TEXTS)))
    vocab = {c: i for i, c in enumerate(["<pad>", "<unk>", *chars])}
    tokenizer = {"tokenizer_class": "VitsTokenizer", "pad_token": "<pad>", "unk_token": "<unk>", "add_blank": True,
                 "normalize": True, "is_uroman": False, "language": "hin", "phonemize": False}
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    files["vocab.json"] = json.dumps(vocab, ensure_ascii=False).encode()
    files["tokenizer_config.json"] = json.dumps(tokenizer).encode()
    return files


@pytest.fixture
def hub(hub_standin, model_files):
    return hub_standin(REPO, model_files)


def test_downloads_the_model_and_synthesises_deterministically(tmp_path, hub, check_wave, check_rows):
    folder = mms.fetch(REPO, options={"cache_dir": hub.cache, "retries": 0})
    wave, sr = mms.synthesize(TEXTS[0], language="hi", voice=str(folder), seed=1)
    check_wave(wave, sr, rate=16000, min_seconds=0.1)
    assert np.array_equal(wave, mms.synthesize(TEXTS[0], language="hi", voice=str(folder), seed=1)[0])
    rows = mms.collect(tmp_path / "out", language="hindi", texts=TEXTS, seed=0, cache_dir=hub.cache, retries=0)
    check_rows(rows, engine="mms", family="online-neural", language="hindi")
    assert sorted(r["text"] for r in rows) == sorted(TEXTS)
    hub.log.clear()
    assert mms.collect(tmp_path / "out", language="hindi", texts=TEXTS, seed=0, cache_dir=hub.cache, retries=0) == rows
    assert not any(cmd == "GET" and name == "model.safetensors" for cmd, name, _ in hub.log)


def test_unreachable_or_incomplete_hub_hands_texts_back(tmp_path, hub, free_port):
    del hub.files["model.safetensors"]
    with pytest.raises(online.PartialCollection, match="model.safetensors not found") as info:
        mms.collect(tmp_path / "a", language="hindi", texts=TEXTS, seed=0, cache_dir=hub.cache, retries=0)
    assert info.value.remaining == TEXTS
    with pytest.raises(SourceUnavailable, match="MMS-TTS download of config.json"):
        mms.collect(tmp_path / "b", language="hindi", texts=TEXTS, seed=0, endpoint=f"http://127.0.0.1:{free_port()}",
                    cache_dir=tmp_path / "c", retries=0, timeout=2)


def test_missing_package_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(mms.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SourceUnavailable, match="pip install transformers"):
        mms.collect(tmp_path, language="hindi", texts=TEXTS)
