"""ResNet18 detector: torchvision layout, shapes, config round trip, normalisation, learning."""
from __future__ import annotations

import pytest
import torch

from voicelib.model.config import ModelConfig
from voicelib.model.registry import build_model, count_parameters

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny(tiny_config):
    return tiny_config()


def test_state_dict_uses_torchvision_names_and_width64_matches_resnet18():
    model = build_model(ModelConfig(width=64))
    keys = set(model.state_dict())
    for name in ("conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight", "layer1.1.bn2.bias",
                 "layer2.0.downsample.0.weight", "layer4.0.downsample.1.running_var", "layer4.1.conv2.weight"):
        assert name in keys
    assert model.conv1.weight.shape == (64, 1, 7, 7)
    # torchvision resnet18: 11,689,512 parameters, minus its 1000-way fc, with a 1-channel conv1, plus our heads
    backbone = 11_689_512 - (512 * 1000 + 1000) - 3 * 64 * 49 + 64 * 49
    assert count_parameters(model) == backbone + (512 + 1) + (512 * 5 + 5) + (512 + 1)


def test_forward_shapes_embed_and_any_length(tiny):
    model = build_model(tiny, seed=0).eval()
    for frames in (101, 57):
        out = model(torch.randn(3, 40, frames))
        assert out["ai"].shape == (3,) and out["language"].shape == (3, 5) and out["multi"].shape == (3,)
    assert model.embed(torch.randn(2, 40, 101)).shape == (2, tiny.embedding_dim)
    with pytest.raises(ValueError, match="n_mels, frames"):
        model(torch.randn(40, 101))


def test_per_utterance_normalisation_ignores_level_offsets(tiny):
    model = build_model(tiny, seed=0).eval()
    feats = torch.randn(2, 40, 101)
    with torch.no_grad():
        a, b = model(feats)["ai"], model(feats + 4.0)["ai"]  # a gain change shifts every log-mel bin
    assert torch.allclose(a, b, atol=1e-4)


def test_config_round_trip_and_refusals():
    cfg = ModelConfig(width=16, blocks=(1, 1, 1, 1), dropout=0.1, segment_seconds=2.0)
    back = ModelConfig.from_dict(cfg.to_dict())
    assert back == cfg and back.features == cfg.features
    assert ModelConfig.light().width == 16
    with pytest.raises(ValueError, match="unknown keys"):
        ModelConfig.from_dict({**cfg.to_dict(), "depth": 50})
    with pytest.raises(ValueError, match="width"):
        ModelConfig(width=0)


def test_seeded_build_is_deterministic(tiny):
    a, b = build_model(tiny, seed=3), build_model(tiny, seed=3)
    c = build_model(tiny, seed=4)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert not torch.equal(a.conv1.weight, c.conv1.weight)


def test_loss_falls_over_a_few_steps(tiny):
    torch.manual_seed(0)
    model = build_model(tiny, seed=0)
    feats = torch.randn(8, 40, 101)
    feats[4:, :, ::4] += 3.0  # class 1 carries a periodic temporal pattern
    target = torch.tensor([0.0] * 4 + [1.0] * 4)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    lossf = torch.nn.BCEWithLogitsLoss()
    first = last = None
    for _ in range(15):
        loss = lossf(model(feats)["ai"], target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = float(loss.detach()) if first is None else first
        last = float(loss.detach())
    assert last < 0.7 * first
