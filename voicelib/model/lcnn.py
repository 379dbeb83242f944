"""LCNN: the Max-Feature-Map light CNN of the ASVspoof 2019/2021 baselines (Lavrentyeva et al. 2019).

Same interface as resnet.ResNet18Detector: built from a config with width / dropout / n_languages /
features (a `ModelConfig` with arch="lcnn"), `embed(features)`, `forward(features)` -> {"ai", "language",
"multi"}, a `heads` ModuleDict and `backbone_modules()`. The convolution stack is Lavrentyeva's (channels
64-64-96-96-128-128-64-64-64 at width 32, each halved by MFM, BatchNorm without affine after the 1x1 layers,
four 2x2 max-pools); as inputs vary in length and bins, the map is average-pooled to 4 frequency rows and
over time before the MFM fully connected layer (160 -> 80 at width 32) that gives the embedding.
"""
from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from voicelib.model.config import lcnn_embedding_dim
from voicelib.model.layers import head_outputs, normalize_features

logger = logging.getLogger(__name__)

FREQ_ROWS = 4  # frequency rows kept by the pooling before the fully connected layer


class MaxFeatureMap(nn.Module):
    """Split dim 1 (channels, or features of a [B, 2n] vector) in halves and keep the element-wise maximum."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.chunk(x, 2, dim=1)
        return torch.maximum(a, b)


def _mfm_conv(c_in: int, c_out: int, kernel: int) -> list[nn.Module]:
    """Convolution to 2*c_out channels followed by MFM down to c_out."""
    return [nn.Conv2d(c_in, 2 * c_out, kernel, 1, kernel // 2), MaxFeatureMap()]


def _body(w: int) -> nn.Sequential:
    """Lavrentyeva's LCNN convolution stack; at w=32 the MFM outputs are 32-32-48-48-64-64-32-32-32."""
    c = [w, w, 3 * w // 2, 3 * w // 2, 2 * w, 2 * w, w, w, w]
    layers: list[nn.Module] = [*_mfm_conv(1, c[0], 5), nn.MaxPool2d(2, 2),
                               *_mfm_conv(c[0], c[1], 1), nn.BatchNorm2d(c[1], affine=False),
                               *_mfm_conv(c[1], c[2], 3), nn.MaxPool2d(2, 2), nn.BatchNorm2d(c[2], affine=False),
                               *_mfm_conv(c[2], c[3], 1), nn.BatchNorm2d(c[3], affine=False),
                               *_mfm_conv(c[3], c[4], 3), nn.MaxPool2d(2, 2),
                               *_mfm_conv(c[4], c[5], 1), nn.BatchNorm2d(c[5], affine=False),
                               *_mfm_conv(c[5], c[6], 3), nn.BatchNorm2d(c[6], affine=False),
                               *_mfm_conv(c[6], c[7], 1), nn.BatchNorm2d(c[7], affine=False),
                               *_mfm_conv(c[7], c[8], 3), nn.MaxPool2d(2, 2)]
    return nn.Sequential(*layers)


class LCNNDetector(nn.Module):
    """LCNN with `ai`, `language` and `multi` heads, on features [B, bins, frames]."""

    def __init__(self, cfg: Any):
        super().__init__()
        self.cfg = cfg
        w, emb = cfg.width, lcnn_embedding_dim(cfg.width)
        self.body = _body(w)
        self.pool = nn.AdaptiveAvgPool2d((FREQ_ROWS, 1))
        self.fc = nn.Sequential(nn.Linear(w * FREQ_ROWS, 2 * emb), MaxFeatureMap(), nn.BatchNorm1d(emb))
        self.dropout = nn.Dropout(cfg.dropout)
        self.heads = nn.ModuleDict({"ai": nn.Linear(emb, 1), "language": nn.Linear(emb, cfg.n_languages),
                                    "multi": nn.Linear(emb, 1)})

    def backbone_modules(self) -> list[nn.Module]:
        """The shared feature extractor (everything but the heads)."""
        return [self.body, self.fc]

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """Embedding [B, embedding_dim] of features [B, bins, frames] (CMVN first unless features.cmvn is False)."""
        if features.dim() != 3:
            raise ValueError(f"features must be [batch, bins, frames], got shape {tuple(features.shape)}")
        if min(features.shape[1:]) < 16:
            raise ValueError(f"LCNN needs at least 16 bins and 16 frames (four 2x2 pools), got {tuple(features.shape)}")
        x = features.float()
        if getattr(self.cfg.features, "cmvn", True):
            x = normalize_features(x)
        x = self.pool(self.body(x.unsqueeze(1)))
        return self.fc(torch.flatten(x, 1))

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits: `ai` [B] (higher = more AI), `language` [B, n_languages], `multi` [B]."""

        return head_outputs(self.heads, self.dropout(self.embed(features)))
