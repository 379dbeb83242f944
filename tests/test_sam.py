"""SAM/ASAM: the perturbation has radius rho, weights come back, loss falls, and it differs from AdamW."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from voicelib.training.sam import SAM, frozen_bn_stats


def _problem(seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    x = torch.randn(128, 6)
    y = ((x[:, 0] - x[:, 1] * x[:, 2]) > 0).float()
    model = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 1))
    return model, x, y


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(model(x).squeeze(-1), y)


def _train(model, x, y, *, sam: bool, steps: int, adaptive: bool = False, rho: float = 0.05) -> list[float]:
    base = torch.optim.AdamW(model.parameters(), lr=0.01)
    opt = SAM(base, rho=rho, adaptive=adaptive) if sam else base
    history = []
    for _ in range(steps):
        loss = _loss(model, x, y)
        history.append(float(loss.detach()))
        loss.backward()
        if sam:
            opt.first_step(zero_grad=True)
            with frozen_bn_stats(model):
                _loss(model, x, y).backward()
            opt.second_step(zero_grad=True)
        else:
            opt.step()
            opt.zero_grad()
    return history


@pytest.mark.parametrize("adaptive", [False, True])
def test_sam_reduces_the_loss(adaptive):
    model, x, y = _problem()
    history = _train(model, x, y, sam=True, steps=150, adaptive=adaptive, rho=0.5 if adaptive else 0.05)
    assert history[-1] < 0.6 * history[0]


def test_two_sam_steps_differ_from_two_adamw_steps_and_asam_from_sam():
    finals = {}
    for name, kwargs in {"adamw": {"sam": False}, "sam": {"sam": True},
                         "asam": {"sam": True, "adaptive": True}}.items():
        model, x, y = _problem()
        _train(model, x, y, steps=2, **kwargs)
        finals[name] = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert not torch.allclose(finals["adamw"], finals["sam"], atol=1e-7)
    assert not torch.allclose(finals["sam"], finals["asam"], atol=1e-7)


def test_first_step_moves_by_rho_and_second_step_restores_before_updating():
    model, x, y = _problem()
    before = [p.detach().clone() for p in model.parameters()]
    opt = SAM(torch.optim.SGD(model.parameters(), lr=0.0), rho=0.1)
    _loss(model, x, y).backward()
    opt.first_step()
    moved = torch.sqrt(sum(((p - b) ** 2).sum() for p, b in zip(model.parameters(), before)))
    assert float(moved.detach()) == pytest.approx(0.1, rel=1e-4)
    _loss(model, x, y).backward()
    opt.second_step()  # lr 0: back exactly where it started
    for p, b in zip(model.parameters(), before):
        torch.testing.assert_close(p.detach(), b)
    with pytest.raises(RuntimeError, match="first_step"):
        opt.second_step()


def test_frozen_bn_stats_keeps_running_statistics_and_state_round_trips():
    model, x, _ = _problem()
    bn = model[1]
    mean = bn.running_mean.clone()
    with frozen_bn_stats(model):
        model(x)
    torch.testing.assert_close(bn.running_mean, mean)
    assert bn.momentum == 0.1
    opt = SAM(torch.optim.AdamW(model.parameters()), rho=0.3, adaptive=True)
    other = SAM(torch.optim.AdamW(model.parameters()))
    other.load_state_dict(opt.state_dict())
    assert other.rho == 0.3 and other.adaptive
    assert opt.param_groups is opt.base.param_groups
    with pytest.raises(ValueError, match="rho"):
        SAM(torch.optim.AdamW(model.parameters()), rho=0.0)
