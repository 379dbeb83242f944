"""AI-vs-human training objectives beside binary cross-entropy: OC-Softmax on the embedding, and the multi-task sum.

Both take (input, labels, mask=None) with labels 0 = human (bona fide) and 1 = AI, and give `score(input)`
with higher = more AI. OC-Softmax (Zhang, Jiang and Duan 2021, "One-class learning towards synthetic voice
spoofing detection") pulls human embeddings within cosine m_real of a learnable centre and pushes AI ones
below m_fake: only the bona fide class is modelled compactly, so AI speech from unseen engines need only
be unlike human speech, not like the engines seen in training.

With s = score = alpha * ((m_real + m_fake) / 2 - cos), the OC-Softmax loss is softplus(alpha * d + s) for
humans and softplus(alpha * d - s) for AI (d = (m_real - m_fake) / 2): a BCE with a margin on a bounded
cosine logit. So `OCSoftmax.head` can replace the model's `ai` head (the centre then lives in the checkpoint
and `out["ai"]` is that score everywhere, detection included) and `OCSoftmax.from_score(out["ai"], ...)` is
the training loss.
"""
from __future__ import annotations

import logging

import torch
from torch import nn
from torch.nn import functional as F

from voicelib.model.layers import OCSoftmaxHead

logger = logging.getLogger(__name__)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of `values` where mask is 1 (all when mask is None); 0 with a gradient when nothing is kept."""
    if mask is None:
        return values.mean()
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def _check(x: torch.Tensor, labels: torch.Tensor, dims: int, what: str) -> None:
    if x.dim() != dims or labels.shape != x.shape[:1]:
        raise ValueError(f"{what}: expected input of {dims} dims and labels [B], got {tuple(x.shape)} and "
                         f"{tuple(labels.shape)}")


class OCSoftmax(nn.Module):
    """One-class softmax on L2-normalised embeddings [B, D] around a learnable bona fide (human) centre."""

    takes = "embedding"

    def __init__(self, embedding_dim: int, *, m_real: float = 0.9, m_fake: float = 0.2, alpha: float = 20.0):
        super().__init__()
        if not -1.0 < m_fake < m_real < 1.0 or alpha <= 0:
            raise ValueError(f"OCSoftmax needs -1 < m_fake < m_real < 1 and alpha > 0, got m_real={m_real}, "
                             f"m_fake={m_fake}, alpha={alpha}")
        self.m_real, self.m_fake, self.alpha = m_real, m_fake, alpha
        self.head = OCSoftmaxHead(embedding_dim, m_real=m_real, m_fake=m_fake, alpha=alpha)

    @property
    def center(self) -> nn.Parameter:
        """The learnable human centre [1, D]."""
        return self.head.center

    def cosine(self, embedding: torch.Tensor) -> torch.Tensor:
        """Cosine similarity [B] of each embedding to the human centre."""
        return self.head.cosine(embedding)

    def forward(self, embedding: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """softplus(alpha * (m_real - cos)) for humans, softplus(alpha * (cos - m_fake)) for AI, averaged."""
        _check(embedding, labels, 2, "OCSoftmax")
        cos = self.cosine(embedding)
        margin = torch.where(labels.bool(), cos - self.m_fake, self.m_real - cos)
        return _masked_mean(F.softplus(self.alpha * margin), mask)

    def from_score(self, score: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The same loss from the head's score [B] (the model's `ai` output when `head` is its ai head)."""
        _check(score, labels, 1, "OCSoftmax.from_score")
        d = self.alpha * (self.m_real - self.m_fake) / 2
        sign = 1.0 - 2.0 * labels.float()  # +1 human, -1 AI
        return _masked_mean(F.softplus(d + sign * score.float()), mask)

    def score(self, embedding: torch.Tensor) -> torch.Tensor:
        """alpha * (midpoint of the margins - cos): higher = more AI, 0 halfway, usable as a logit."""
        return self.head(embedding).squeeze(-1)


def multitask(out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], weights: dict[str, float],
              ai_loss: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """Per-head losses and their weighted total; masked targets are left out (`ai_loss`: OC-Softmax's from_score)."""
    ai_mask = batch["ai_mask"]
    if ai_loss is not None:
        result = {"ai": ai_loss.from_score(out["ai"], batch["ai"], ai_mask)}
    else:
        ai = (F.binary_cross_entropy_with_logits(out["ai"].float(), batch["ai"], reduction="none") * ai_mask).sum()
        result = {"ai": ai / ai_mask.sum().clamp(min=1.0)}
    zero = sum(v.float().sum() for v in out.values()) * 0.0  # every head in the graph (DDP needs no unused search)
    lang = batch["language"]
    result["language"] = F.cross_entropy(out["language"].float(), lang, ignore_index=-1) if (lang >= 0).any() else zero
    result["multi"] = (F.binary_cross_entropy_with_logits(out["multi"].float(), batch["multi"]) if weights["multi"]
                       else zero)
    fam = batch.get("family")
    result["family"] = (F.cross_entropy(out["family"].float(), fam, ignore_index=-1)
                        if "family" in out and weights.get("family") and (fam >= 0).any() else zero)
    result["total"] = sum(weights.get(k, 0.0) * result[k] for k in ("ai", "language", "multi", "family"))
    return result
