"""SSL front end: a tiny random wav2vec2 through the head, and the hub download against a local stand-in."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers", reason="optional: pip install transformers==5.17.0")

from voicelib.errors import ModelError, SourceUnavailable  # noqa: E402
from voicelib.model import ssl  # noqa: E402
from voicelib.model.ssl import SSLConfig, SSLDetector  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
REPO = "tiny/wav2vec2"


def _tiny_encoder(seed: int = 0):
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(seed)
    cfg = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                         conv_dim=(32, 32, 32), conv_stride=(5, 4, 4), conv_kernel=(10, 4, 4),
                         num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    return Wav2Vec2Model(cfg)


def test_head_outputs_the_detector_dict_and_only_the_head_trains(make_noise):
    model = SSLDetector(SSLConfig(projection=16, dropout=0.0), _tiny_encoder())
    waves = torch.stack([torch.from_numpy(make_noise(duration=0.5, seed=i)) for i in range(4)])
    out = model(waves)
    assert out["ai"].shape == (4,) and out["language"].shape == (4, 5) and out["multi"].shape == (4,)
    assert model.layer_mix().shape == (3,) and float(model.layer_mix().sum().detach()) == pytest.approx(1.0)
    assert all(not p.requires_grad for p in model.encoder.parameters())
    model.train()
    assert not model.encoder.training and model.heads.training
    frozen = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    labels = torch.tensor([0.0, 1.0, 0.0, 1.0])
    losses = []
    for _ in range(25):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(waves)["ai"], labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
    assert all(torch.equal(v, model.encoder.state_dict()[k]) for k, v in frozen.items())
    assert model.layer_weights.grad is not None
    with pytest.raises(ValueError, match="waves"):
        model(torch.zeros(2, 80, 100))


@pytest.fixture
def hub(tmp_path, hub_standin):
    """A stand-in hub serving a tiny wav2vec2 saved with save_pretrained."""
    saved = tmp_path / "saved"
    _tiny_encoder(seed=1).save_pretrained(str(saved))
    return hub_standin(REPO, {p.name: p.read_bytes() for p in saved.iterdir()})


def test_from_pretrained_downloads_the_weights_and_loads_them(tmp_path, hub):
    cfg = SSLConfig(model_name=REPO, projection=8)
    model = SSLDetector.from_pretrained(cfg, endpoint=hub.url, cache_dir=tmp_path / "cache", retries=0)
    reference = _tiny_encoder(seed=1).state_dict()
    assert all(torch.equal(v, model.encoder.state_dict()[k]) for k, v in reference.items())
    local = ssl.download(REPO, endpoint=hub.url, cache_dir=tmp_path / "cache", retries=0)
    assert (Path(local) / "config.json").is_file()
    again = SSLDetector.from_pretrained(SSLConfig(model_name=str(local), projection=8))  # a folder: no network
    assert type(again.encoder).__name__ == "Wav2Vec2Model"


def test_missing_weights_and_unreachable_hub_say_what_to_do(tmp_path, hub, free_port):
    hub.files.pop("model.safetensors")
    with pytest.raises(ModelError, match="none of model.safetensors, pytorch_model.bin"):
        ssl.download(REPO, endpoint=hub.url, cache_dir=tmp_path / "c1", retries=0)
    port = free_port()
    with pytest.raises(SourceUnavailable, match=f"cannot download {REPO}/config.json: no network; ") as info:
        ssl.download(REPO, endpoint=f"http://127.0.0.1:{port}", cache_dir=tmp_path / "c2", retries=0,
                              timeout=2)
    assert "\n" not in str(info.value) and "--local-dir" in str(info.value)


def test_config_round_trip():
    cfg = SSLConfig(model_name="microsoft/wavlm-base-plus", projection=64)
    assert SSLConfig.from_dict(cfg.to_dict()) == cfg and cfg.embedding_dim == 64
    with pytest.raises(ValueError, match="unknown keys"):
        SSLConfig.from_dict({"hidden": 3})


def test_missing_transformers_says_how_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ModelError, match="pip install transformers==5.17.0"):
        ssl.require_transformers()
