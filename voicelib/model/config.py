"""ModelConfig: the architecture and input settings of a detector, everything needed to rebuild it."""
from __future__ import annotations

import dataclasses
from typing import Any

from voicelib.audio.features import FeatureConfig
from voicelib.audio.preprocess import PreprocessConfig
from voicelib.languages import LANGUAGE_NAMES

HEADS = ("ai", "language", "multi")
ARCHS = ("resnet18", "lcnn", "whisper-base")
ENCODER_ARCHS = ("whisper-base",)  # a frozen pretrained speech encoder under a light back end
AI_HEADS = ("linear", "ocsoftmax")
MAX_WIDTH = 512  # 8x the standard ResNet18: wider runs out of memory long after it starts
OCSOFTMAX = {"m_real": 0.9, "m_fake": 0.2, "alpha": 20.0}  # Zhang et al. 2021


def lcnn_embedding_dim(width: int) -> int:
    """The LCNN's embedding size for a width (5/2 of it: 80 at the published width 32)."""
    return 5 * width // 2


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
    encoder_layers: tuple[int, ...] = ()  # encoder archs: hidden states to weigh (0 = after the stem .. 6); () all
    encoder_sha256: str = ""  # encoder archs: the weights trained on (filled when the model is built)

    def __post_init__(self) -> None:
        self.blocks = tuple(int(b) for b in self.blocks)
        self.families = tuple(str(f) for f in self.families)
        self.encoder_layers = tuple(int(i) for i in self.encoder_layers)
        if len(set(self.families)) != len(self.families) or (self.families and not self.family_head):
            raise ValueError(f"ModelConfig: families {list(self.families)} must be distinct and need family_head=True")
        if isinstance(self.features, dict):
            self.features = FeatureConfig.from_dict(self.features)
        if isinstance(self.preprocess, dict):
            self.preprocess = PreprocessConfig.from_dict(self.preprocess)
        if self.arch not in ARCHS or self.ai_head not in AI_HEADS:
            raise ValueError(f"ModelConfig: arch {self.arch!r} / ai_head {self.ai_head!r} unknown; use arch one of "
                             f"{', '.join(ARCHS)} and ai_head one of {', '.join(AI_HEADS)}")
        blocks_ok = len(self.blocks) == 4 and 1 <= min(self.blocks) <= max(self.blocks) <= 8
        if not 1 <= self.width <= MAX_WIDTH or not blocks_ok:
            raise ValueError(f"ModelConfig: width {self.width} / blocks {list(self.blocks)} invalid; use width "
                             f"1..{MAX_WIDTH} (64 is the standard ResNet18) and 4 block counts of 1..8")
        if self.arch in ENCODER_ARCHS:
            self._encoder_checks()
        if self.arch == "lcnn" and self.width % 2:
            raise ValueError(f"ModelConfig: the LCNN's width {self.width} must be even (32 is the published size)")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ModelConfig: dropout {self.dropout} must be in [0, 1)")
        if not 0 < self.segment_seconds <= 30:
            raise ValueError(f"ModelConfig: segment_seconds {self.segment_seconds} must be in (0, 30]")

    def _encoder_checks(self) -> None:
        """An encoder model reads Whisper's own log-mel; its layer choice must name existing hidden states."""
        if self.features.kind != "whisper":
            self.features = FeatureConfig.from_dict("whisper")
        layers = self.encoder_layers
        if any(not 0 <= i <= 6 for i in layers) or len(set(layers)) != len(layers):
            raise ValueError(f"ModelConfig: encoder_layers {list(self.encoder_layers)} must be distinct hidden states "
                             "0..6 (0: after the conv stem, 6: the last block), or [] for all seven")

    @classmethod
    def light(cls, **overrides: Any) -> "ModelConfig":
        """A narrow ResNet18 (width 16) that trains in minutes on a CPU."""
        return cls(**{"width": 16, **overrides})

    @property
    def embedding_dim(self) -> int:
        """Size of the pooled embedding fed to the heads."""
        if self.arch == "lcnn":

            return lcnn_embedding_dim(self.width)
        if self.arch in ENCODER_ARCHS:
            return 4 * self.width
        return 8 * self.width

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return {"width": self.width, "blocks": list(self.blocks), "dropout": self.dropout,
                "n_languages": self.n_languages, "segment_seconds": self.segment_seconds,
                "features": self.features.to_dict(), "arch": self.arch, "ai_head": self.ai_head,
                "preprocess": self.preprocess.to_dict(), "family_head": self.family_head,
                "families": list(self.families), "encoder_layers": list(self.encoder_layers),
                "encoder_sha256": self.encoder_sha256}

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
