"""LCNN: the ResNet18Detector interface, any front end's bins, seeded, and it learns a tiny task."""
from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from voicelib.audio.features import KINDS, FeatureConfig, frontend, n_bins
from voicelib.model.config import ModelConfig
from voicelib.model.lcnn import LCNNDetector
from voicelib.model.registry import build_model, count_parameters

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def lcnn(**fields) -> ModelConfig:
    return ModelConfig(arch="lcnn", **fields)


@pytest.mark.parametrize("kind", KINDS)
def test_outputs_match_the_resnet_interface_for_every_front_end(kind):
    cfg = lcnn(width=8, features=FeatureConfig(kind=kind))
    model = build_model(cfg, seed=0).eval()
    feats = frontend(cfg.features)(torch.randn(3, 16000) * 0.1)
    assert feats.shape[1] == n_bins(cfg.features)
    out = model(feats)
    assert out["ai"].shape == (3,) and out["language"].shape == (3, cfg.n_languages) and out["multi"].shape == (3,)
    assert model.embed(feats).shape == (3, cfg.embedding_dim)
    assert set(model.heads) == {"ai", "language", "multi"}


def test_backbone_and_heads_cover_every_parameter_and_a_model_config_builds_it():
    model = build_model(lcnn(width=8), seed=0)
    backbone = {id(p) for m in model.backbone_modules() for p in m.parameters()}
    heads = {id(p) for p in model.heads.parameters()}
    assert not backbone & heads and backbone | heads == {id(p) for p in model.parameters()}
    resnet_cfg = ModelConfig(width=8, dropout=0.1)
    assert count_parameters(LCNNDetector(resnet_cfg)) == count_parameters(model)


def test_seeded_build_is_reproducible_and_cmvn_switch_changes_the_input():
    a, b = build_model(lcnn(width=8), seed=3).eval(), build_model(lcnn(width=8), seed=3).eval()
    x = torch.randn(2, 80, 64) * 3 + 5
    torch.testing.assert_close(a(x)["ai"], b(x)["ai"])
    raw = build_model(lcnn(width=8, features=FeatureConfig(cmvn=False)), seed=3).eval()
    assert not torch.allclose(raw(x)["ai"], a(x)["ai"])
    torch.testing.assert_close(a(x)["ai"], a(x * 2 + 1)["ai"], atol=1e-4, rtol=1e-4)  # CMVN: level-free


def test_loss_falls_on_a_tiny_separable_task(make_tone, make_noise):
    torch.manual_seed(0)
    front = frontend(FeatureConfig())
    waves = torch.stack([torch.from_numpy(make_tone(300.0 + 50 * i, duration=0.64)) for i in range(4)]
                        + [torch.from_numpy(make_noise(duration=0.64, seed=i)) for i in range(4)])
    feats, labels = front(waves), torch.tensor([0.0] * 4 + [1.0] * 4)
    model = build_model(lcnn(width=8, dropout=0.0), seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = F.binary_cross_entropy_with_logits(model(feats)["ai"], labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.3 * losses[0]


def test_config_round_trip_and_refusals():
    cfg = lcnn(width=16, features=FeatureConfig(kind="linear"))
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="even"):
        lcnn(width=7)
    with pytest.raises(ValueError, match="16 bins"):
        build_model(lcnn(width=8))(torch.zeros(1, 8, 100))
