"""Sharpness-aware minimisation around any torch optimizer: SAM (Foret et al. 2021) and ASAM (Kwon et al. 2021).

Each update takes two forward/backward passes: the first gradient moves the weights to the (approximately)
worst point within a ball of radius `rho`, the second gradient, taken there, updates the original weights:

    loss_fn(model(x)).backward();  sam.first_step(zero_grad=True)
    with frozen_bn_stats(model):
        loss_fn(model(x)).backward()
    sam.second_step(zero_grad=True)

`adaptive=True` (ASAM) scales the ball by |w| per weight, so the radius is invariant to weight rescaling;
use a larger rho then (Kwon et al. use 0.5-2 against 0.05 for SAM). Clip gradients before second_step.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)


class SAM:
    """Wraps `base` (e.g. AdamW): `first_step` perturbs, `second_step` restores and lets `base` update."""

    def __init__(self, base: torch.optim.Optimizer, *, rho: float = 0.05, adaptive: bool = False, eta: float = 0.0):
        if rho <= 0:
            raise ValueError(f"SAM rho={rho} must be positive (0.05 for SAM, 0.5-2 for ASAM are usual)")
        self.base, self.rho, self.adaptive, self.eta = base, float(rho), bool(adaptive), float(eta)
        self._perturbation: dict[torch.nn.Parameter, torch.Tensor] = {}

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        """The base optimizer's groups (so learning-rate schedules work unchanged)."""
        return self.base.param_groups

    def _params(self) -> Iterator[torch.nn.Parameter]:
        for group in self.base.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    yield p

    def _scale(self, p: torch.Tensor) -> torch.Tensor | float:
        return p.abs() + self.eta if self.adaptive else 1.0

    @torch.no_grad()
    def first_step(self, *, zero_grad: bool = True) -> None:
        """w <- w + rho * T^2 g / ||T g|| (T = |w| for ASAM, identity for SAM)."""
        params = list(self._params())
        if not params:
            raise RuntimeError("SAM.first_step: no gradients; call loss.backward() first")
        norms = [torch.linalg.vector_norm(self._scale(p) * p.grad) for p in params]
        norm = torch.linalg.vector_norm(torch.stack(norms))
        factor = self.rho / (norm + 1e-12)
        for p in params:
            scale = self._scale(p)
            e = p.grad * (scale * scale if self.adaptive else 1.0) * factor
            p.add_(e)
            self._perturbation[p] = e
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def second_step(self, *, zero_grad: bool = True) -> None:
        """Return to w and update it with the gradient taken at the perturbed point."""
        if not self._perturbation:
            raise RuntimeError("SAM.second_step called without first_step")
        for p, e in self._perturbation.items():
            p.sub_(e)
        self._perturbation.clear()
        self.base.step()
        if zero_grad:
            self.zero_grad()

    def step(self, closure: Callable[[], torch.Tensor]) -> torch.Tensor:
        """Both steps with a closure that zeroes nothing, computes the loss and calls backward; returns the loss."""
        loss = closure()
        self.first_step(zero_grad=True)
        closure()
        self.second_step(zero_grad=True)
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradients of every parameter."""
        self.base.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        """The base optimizer's state plus rho and the adaptive flag."""
        return {"base": self.base.state_dict(), "rho": self.rho, "adaptive": self.adaptive, "eta": self.eta}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what state_dict() returned."""
        self.base.load_state_dict(state["base"])
        self.rho, self.adaptive, self.eta = float(state["rho"]), bool(state["adaptive"]), float(state["eta"])


@contextlib.contextmanager
def frozen_bn_stats(model: nn.Module) -> Iterator[None]:
    """Leave BatchNorm running statistics untouched during SAM's second forward pass."""
    saved = {}
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            saved[m] = m.momentum
            m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in saved.items():
            m.momentum = momentum
