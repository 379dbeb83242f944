"""The detector: a ResNet18 over log-mel features with AI-vs-human, language and multi-speaker heads, and its files.

State-dict names follow torchvision's resnet18 (conv1, bn1, layer1.0.conv1, ..., layer4.1.downsample.0/1)
with one input channel and a configurable `width` (64 = standard ResNet18; 16 or 24 for CPU runs).
The STFT/log-mel front end (voicelib.audio.features.LogMel) stays outside the network, so ONNX export and the
quantised model take features, not waves.

Input normalisation lives inside the model: per-utterance mean and variance over time for each mel bin
(CMVN). It removes the overall level and static channel colouring of a clip -- both source cues rather
than AI cues -- and matches the per-clip normalisation of the existing recipe we compare against.
"""
from __future__ import annotations

import torch
from torch import nn

from voicelib.model.config import ModelConfig
from voicelib.model.layers import head_outputs, normalize_features


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock (two 3x3 convolutions and a shortcut)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18Detector(nn.Module):
    """ResNet18 (1 input channel) with `ai`, `language` and `multi` heads."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.conv1 = nn.Conv2d(1, w, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        planes = [w, 2 * w, 4 * w, 8 * w]
        inplanes = w
        for i, (p, n) in enumerate(zip(planes, cfg.blocks)):
            layers = [BasicBlock(inplanes, p, 1 if i == 0 else 2)] + [BasicBlock(p, p) for _ in range(n - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
            inplanes = p
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(cfg.dropout)
        self.heads = nn.ModuleDict({"ai": nn.Linear(8 * w, 1), "language": nn.Linear(8 * w, cfg.n_languages),
                                    "multi": nn.Linear(8 * w, 1)})
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for m in self.modules():  # zero-init the last BN of each block, as torchvision's zero_init_residual
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def backbone_modules(self) -> list[nn.Module]:
        """The shared feature extractor (everything but the heads)."""
        return [self.conv1, self.bn1, self.layer1, self.layer2, self.layer3, self.layer4]

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """Pooled embedding [B, 8*width] of log-mel features [B, n_mels, frames]."""
        if features.dim() != 3:
            raise ValueError(f"features must be [batch, n_mels, frames], got shape {tuple(features.shape)}")
        x = features.float()
        x = (normalize_features(x) if self.cfg.features.cmvn else x).unsqueeze(1)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits: `ai` [B] (higher = more AI), `language` [B, n_languages], `multi` [B] (`family` [B, n_families])."""
        return head_outputs(self.heads, self.dropout(self.embed(features)))
