"""Pieces every architecture shares: input normalisation (CMVN), the heads and their outputs."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from voicelib.model.config import HEADS


def normalize_features(features: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-utterance mean/variance normalisation over time for each mel bin ([B, n_mels, frames])."""
    mean = features.mean(dim=-1, keepdim=True)
    var = features.var(dim=-1, keepdim=True, unbiased=False)
    return (features - mean) / torch.sqrt(var + eps)


def head_outputs(heads: nn.ModuleDict, z: torch.Tensor) -> dict[str, torch.Tensor]:
    """The logits of every head on embeddings `z`; `family` only when the model has that head."""
    out = {"ai": heads["ai"](z).squeeze(-1), "language": heads["language"](z), "multi": heads["multi"](z).squeeze(-1)}
    if "family" in heads:
        out["family"] = heads["family"](z)
    return out


def output_names(model: nn.Module) -> tuple[str, ...]:
    """The names of a network's outputs, in export order: HEADS, then `family` when it has that head."""
    return HEADS + (("family",) if "family" in model.heads else ())


class OCSoftmaxHead(nn.Module):
    """The learnable human centre; embeddings [B, D] -> score [B, 1] = alpha * (midpoint - cos), higher = more AI."""

    def __init__(self, embedding_dim: int, *, m_real: float, m_fake: float, alpha: float):
        super().__init__()
        self.midpoint, self.alpha = (m_real + m_fake) / 2, alpha
        self.center = nn.Parameter(torch.empty(1, embedding_dim))
        nn.init.kaiming_uniform_(self.center, 0.25)  # as the authors' code

    def cosine(self, embedding: torch.Tensor) -> torch.Tensor:
        """Cosine similarity [B] of each embedding to the human centre."""
        return F.normalize(embedding.float(), dim=1) @ F.normalize(self.center, dim=1).squeeze(0)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        """Score [B, 1], shaped like nn.Linear(D, 1) so it can stand in for the model's `ai` head."""
        return (self.alpha * (self.midpoint - self.cosine(embedding))).unsqueeze(-1)
