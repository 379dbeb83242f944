"""The detector: a ResNet18 over log-mel features with AI-vs-human, language and multi-speaker heads, and its files.

State-dict names follow torchvision's resnet18 (conv1, bn1, layer1.0.conv1, ..., layer4.1.downsample.0/1)
with one input channel and a configurable `width` (64 = standard ResNet18; 16 or 24 for CPU runs).
The STFT/log-mel front end (voicelib.features.LogMel) stays outside the network, so ONNX export and the
quantised model take features, not waves.

Input normalisation lives inside the model: per-utterance mean and variance over time for each mel bin
(CMVN). It removes the overall level and static channel colouring of a clip -- both source cues rather
than AI cues -- and matches the per-clip normalisation of the existing recipe we compare against.

A model directory holds `model.safetensors` (weights), `config.json` (everything to rebuild and use the
model: architecture, feature settings, labels, sample rate, threshold, calibration, training config, seed,
data summary, versions), `metrics.json` and `history.csv`. Loading reads only safetensors and JSON, so it
never executes code from the files. The versioned registry of such directories is voicelib.store.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from voicelib.errors import ModelError
from voicelib.features import FeatureConfig
from voicelib.io import atomic_path, read_json, write_json
from voicelib.languages import LANGUAGE_NAMES
from voicelib.preprocess import PreprocessConfig

logger = logging.getLogger(__name__)

HEADS = ("ai", "language", "multi")
ARCHS = ("resnet18", "lcnn")
AI_HEADS = ("linear", "ocsoftmax")
OCSOFTMAX = {"m_real": 0.9, "m_fake": 0.2, "alpha": 20.0}  # Zhang et al. 2021
WEIGHTS, CONFIG, METRICS, HISTORY = "model.safetensors", "config.json", "metrics.json", "history.csv"
MODEL_FILES = (WEIGHTS, CONFIG, METRICS, HISTORY)


@dataclasses.dataclass
class ModelConfig:
    """Architecture and input settings of a detector; everything needed to rebuild it."""

    width: int = 64
    blocks: tuple[int, int, int, int] = (2, 2, 2, 2)
    dropout: float = 0.2
    n_languages: int = len(LANGUAGE_NAMES)
    segment_seconds: float = 3.0
    features: FeatureConfig = dataclasses.field(default_factory=FeatureConfig)
    arch: str = "resnet18"  # resnet18 (the design's default) or lcnn (the ASVspoof light CNN)
    ai_head: str = "linear"  # linear (binary cross-entropy) or ocsoftmax (one-class softmax around human speech)
    preprocess: PreprocessConfig = dataclasses.field(default_factory=PreprocessConfig.off)  # in every path
    family_head: bool = False  # attribution: a head saying which generator family an AI clip resembles
    families: tuple[str, ...] = ()  # the family head's classes (train.fit fills them from the training AI clips)

    def __post_init__(self) -> None:
        self.blocks = tuple(int(b) for b in self.blocks)
        self.families = tuple(str(f) for f in self.families)
        if len(set(self.families)) != len(self.families) or (self.families and not self.family_head):
            raise ValueError(f"ModelConfig: families {list(self.families)} must be distinct and need family_head=True")
        if isinstance(self.features, dict):
            self.features = FeatureConfig.from_dict(self.features)
        if isinstance(self.preprocess, dict):
            self.preprocess = PreprocessConfig.from_dict(self.preprocess)
        if self.arch not in ARCHS or self.ai_head not in AI_HEADS:
            raise ValueError(f"ModelConfig: arch {self.arch!r} / ai_head {self.ai_head!r} unknown; use arch one of "
                             f"{', '.join(ARCHS)} and ai_head one of {', '.join(AI_HEADS)}")
        if self.width < 1 or len(self.blocks) != 4 or min(self.blocks) < 1:
            raise ValueError(f"ModelConfig: width {self.width} / blocks {self.blocks} invalid; "
                             "use width>=1 and 4 positive block counts")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ModelConfig: dropout {self.dropout} must be in [0, 1)")
        if self.segment_seconds <= 0:
            raise ValueError(f"ModelConfig: segment_seconds {self.segment_seconds} must be positive")

    @classmethod
    def light(cls, **overrides: Any) -> "ModelConfig":
        """A narrow ResNet18 (width 16) that trains in minutes on a CPU."""
        return cls(**{"width": 16, **overrides})

    @property
    def embedding_dim(self) -> int:
        """Size of the pooled embedding fed to the heads."""
        if self.arch == "lcnn":
            from voicelib.lcnn import embedding_dim

            return embedding_dim(self.width)
        return 8 * self.width

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return {"width": self.width, "blocks": list(self.blocks), "dropout": self.dropout,
                "n_languages": self.n_languages, "segment_seconds": self.segment_seconds,
                "features": self.features.to_dict(), "arch": self.arch, "ai_head": self.ai_head,
                "preprocess": self.preprocess.to_dict(), "family_head": self.family_head,
                "families": list(self.families)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        """Rebuild from `to_dict()` output, refusing unknown keys (a newer or foreign config)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"ModelConfig: unknown keys {sorted(unknown)}; the config was written by another version")
        data = dict(data)
        if "features" in data:
            data["features"] = FeatureConfig.from_dict(data["features"])
        if "preprocess" in data:
            data["preprocess"] = PreprocessConfig.from_dict(data["preprocess"])
        return cls(**data)


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


def normalize_features(features: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-utterance mean/variance normalisation over time for each mel bin ([B, n_mels, frames])."""
    mean = features.mean(dim=-1, keepdim=True)
    var = features.var(dim=-1, keepdim=True, unbiased=False)
    return (features - mean) / torch.sqrt(var + eps)


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


def head_outputs(heads: nn.ModuleDict, z: torch.Tensor) -> dict[str, torch.Tensor]:
    """The logits of every head on embeddings `z`; `family` only when the model has that head."""
    out = {"ai": heads["ai"](z).squeeze(-1), "language": heads["language"](z), "multi": heads["multi"](z).squeeze(-1)}
    if "family" in heads:
        out["family"] = heads["family"](z)
    return out


def output_names(model: nn.Module) -> tuple[str, ...]:
    """The names of a network's outputs, in export order: HEADS, then `family` when it has that head."""
    return HEADS + (("family",) if "family" in model.heads else ())


def _network(cfg: ModelConfig) -> nn.Module:
    """The network `cfg.arch` names, with the AI head `cfg.ai_head` names."""
    if cfg.arch == "lcnn":
        from voicelib.lcnn import LCNNDetector

        net = LCNNDetector(cfg)
    else:
        net = ResNet18Detector(cfg)
    if cfg.ai_head == "ocsoftmax":
        from voicelib.losses import OCSoftmaxHead

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


# ---------------------------------------------------------------- the model directory


def save_weights(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write a model's state dict as safetensors, atomically."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    return Path(path)


def save_model(model: nn.Module, model_dir: str | os.PathLike, *, config: dict[str, Any],
               metrics: dict[str, Any] | None = None) -> Path:
    """Write weights, config (and metrics) into `model_dir`; each file is replaced atomically."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    save_weights(model, model_dir / WEIGHTS)
    write_json(model_dir / CONFIG, config)
    if metrics is not None:
        write_json(model_dir / METRICS, metrics)
    return model_dir


def read_meta(model_dir: str | os.PathLike) -> dict[str, Any]:
    """config.json of a model dir, with metrics.json (if any) under 'metrics'; ModelError when unusable."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelError(f"{model_dir}: no such model directory; train one with train.fit or pick one with "
                         "`python -m voicelib models list`")
    for name in (WEIGHTS, CONFIG):
        if not (model_dir / name).is_file():
            raise ModelError(f"{model_dir}: {name} is missing; the directory is not a complete model "
                             "(retrain or re-register it)")
    try:
        meta = read_json(model_dir / CONFIG)
        meta["metrics"] = read_json(model_dir / METRICS) if (model_dir / METRICS).is_file() else {}
    except ValueError as exc:
        raise ModelError(str(exc)) from None
    if not isinstance(meta.get("model"), dict):
        raise ModelError(f"{model_dir / CONFIG}: no 'model' section; this is not a voicelib detector config")
    return meta


def load_model(path: str | os.PathLike, *, device: str = "cpu") -> tuple[ResNet18Detector, dict[str, Any]]:
    """Rebuild a detector from safetensors + config.json (no pickle), in eval mode on `device`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    model_dir = Path(path)
    meta = read_meta(model_dir)
    try:
        cfg = ModelConfig.from_dict(meta["model"])
    except (ValueError, TypeError) as exc:
        raise ModelError(f"{model_dir / CONFIG}: model section unusable ({exc}); re-export the model") from None
    try:
        state = load_file(str(model_dir / WEIGHTS), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"{model_dir / WEIGHTS}: corrupt weights file ({exc}); retrain or restore the model") from None
    model = build_model(cfg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1:2] or [str(exc)]
        raise ModelError(f"{model_dir}: weights do not match config.json ({first[0].strip()}); "
                         "the files come from different models") from None
    return model.to(device).eval(), meta


def _versions() -> dict[str, str]:
    import platform

    import numpy as np

    from voicelib import __version__

    return {"voicelib": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def model_card(cfg: ModelConfig, *, train_config: dict[str, Any], training: dict[str, Any], data: dict[str, Any],
               language: str, language_head: bool, **extra: Any) -> dict[str, Any]:
    """config.json of a trained model: everything needed to rebuild and use it, how it was trained included."""
    import time

    return {"format": "voicelib-detector", "format_version": 1, "language": language, "model": cfg.to_dict(),
            "features": cfg.features.to_dict(), "sample_rate": cfg.features.sample_rate,
            "segment_seconds": cfg.segment_seconds, "labels": ["human", "ai"], "positive_label": "ai",
            "languages": LANGUAGE_NAMES, "language_head_active": language_head,
            "score": "mean AI logit over segments of segment_seconds (higher = more AI)",
            "threshold_scale": "logit", "train_config": train_config, "training": training, "data": data,
            "versions": _versions(), "created": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra}
