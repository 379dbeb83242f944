"""AI objectives: BCE as today, OC-Softmax falls on separable embeddings and scores higher = more AI."""
from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from voicelib.metrics import eer
from voicelib.model.config import ModelConfig
from voicelib.model.registry import build_model
from voicelib.training.losses import OCSoftmax


def _clusters(n: int = 64, dim: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Human embeddings around one direction, AI ones around another (labels 0 = human, 1 = AI)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(2, dim, generator=g)
    labels = torch.arange(n) % 2
    return centres[labels] + 0.3 * torch.randn(n, dim, generator=g), labels


def test_ocsoftmax_loss_falls_and_separates_the_classes_human_near_the_centre():
    torch.manual_seed(0)
    x, labels = _clusters()
    proj = torch.nn.Linear(16, 8)
    loss_fn = OCSoftmax(8)
    opt = torch.optim.Adam(list(proj.parameters()) + list(loss_fn.parameters()), lr=0.02)
    first = None
    for _ in range(150):
        loss = loss_fn(proj(x), labels)
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.2 * first
    with torch.no_grad():
        cos, score = loss_fn.cosine(proj(x)), loss_fn.score(proj(x))
    assert cos[labels == 0].min() > 0.8 and cos[labels == 1].max() < 0.3  # the margins are met
    assert score[labels == 1].min() > 0 > score[labels == 0].max()  # higher = more AI, 0 between margins
    assert eer(labels.numpy(), score.numpy())[0] == 0.0


def test_ocsoftmax_loss_values_follow_the_formula():
    loss_fn = OCSoftmax(2, m_real=0.9, m_fake=0.2, alpha=20.0)
    with torch.no_grad():
        loss_fn.center.copy_(torch.tensor([[1.0, 0.0]]))
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # cos 1 and cos 0
    human = loss_fn(emb, torch.tensor([0, 0]))
    expected = (F.softplus(torch.tensor(20 * (0.9 - 1.0))) + F.softplus(torch.tensor(20 * (0.9 - 0.0)))) / 2
    torch.testing.assert_close(human, expected)
    ai = loss_fn(emb, torch.tensor([1, 1]), torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(ai, F.softplus(torch.tensor(20 * (0.0 - 0.2))))
    torch.testing.assert_close(loss_fn.score(emb), torch.tensor([20 * (0.55 - 1.0), 20 * 0.55]))


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="m_fake"):
        OCSoftmax(4, m_real=0.2, m_fake=0.5)
    with pytest.raises(ValueError, match="labels"):
        OCSoftmax(4)(torch.zeros(3, 4), torch.zeros(2))


def test_ocsoftmax_head_replaces_the_models_ai_head_and_from_score_is_the_same_loss():
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="lcnn", width=8, dropout=0.0), seed=0).eval()
    loss_fn = OCSoftmax(model.cfg.embedding_dim)
    model.heads["ai"] = loss_fn.head
    feats, labels, mask = torch.randn(4, 80, 64), torch.tensor([0, 1, 0, 1]), torch.tensor([1.0, 1.0, 0.0, 1.0])
    out = model(feats)
    torch.testing.assert_close(out["ai"], loss_fn.score(model.embed(feats)))
    torch.testing.assert_close(loss_fn.from_score(out["ai"], labels, mask), loss_fn(model.embed(feats), labels, mask))
    assert any(p is loss_fn.center for p in model.parameters())  # the centre is saved with the model
