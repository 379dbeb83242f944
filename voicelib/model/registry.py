"""Build the network a ModelConfig names (architecture, AI head, family head)."""
from __future__ import annotations

import torch
from torch import nn

from voicelib.model.config import OCSOFTMAX, ModelConfig
from voicelib.model.encoders import WhisperDetector
from voicelib.model.layers import OCSoftmaxHead
from voicelib.model.lcnn import LCNNDetector
from voicelib.model.resnet import ResNet18Detector


def _network(cfg: ModelConfig) -> nn.Module:
    """The network `cfg.arch` names, with the AI head `cfg.ai_head` names."""
    networks = {"resnet18": ResNet18Detector, "lcnn": LCNNDetector, "whisper-base": WhisperDetector}
    net = networks[cfg.arch](cfg)
    if cfg.ai_head == "ocsoftmax":
        net.heads["ai"] = OCSoftmaxHead(cfg.embedding_dim, **OCSOFTMAX)
    if cfg.family_head:
        if len(cfg.families) < 2:
            raise ValueError(f"ModelConfig: family_head needs at least 2 families, got {list(cfg.families)}; "
                             "train.fit fills them from the training AI clips")
        net.heads["family"] = nn.Linear(cfg.embedding_dim, len(cfg.families))
    return net


def build_model(cfg: ModelConfig | None = None, *, seed: int | None = None) -> nn.Module:
    """Build a freshly initialised detector (seeded when `seed` is given)."""
    cfg = cfg or ModelConfig()
    if seed is None:
        return _network(cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _network(cfg)


def count_parameters(model: nn.Module, *, trainable: bool = False) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable)
