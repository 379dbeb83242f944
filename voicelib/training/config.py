"""TrainConfig: every training setting and its only default; TrainResult: what a training gives back."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pandas as pd

from voicelib import config

MODES = ("scratch", "full", "frozen", "head")


SELECT_ON = ("eer", "accuracy", "last")


SAM_MODES = ("", "sam", "asam")




REQUIRED_COLUMNS = ("path", "label", "language", "speaker", "duration", "split")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train: every training default is defined here and nowhere else; saved in the model directory."""

    epochs: int = 12  # passes over the training set (early stopping may end sooner)
    patience: int = 4  # epochs without validation improvement before stopping
    lr: float = 1e-3  # peak learning rate (AdamW, linear warm-up then cosine decay)
    batch_size: int = 32  # segments per batch
    weight_decay: float = 0.01  # AdamW weight decay
    warmup_fraction: float = 0.05  # share of the steps spent warming up the learning rate
    mix_prob: float = 0.2  # share of training segments made two-speaker mixtures (multi-speaker head)
    language_weight: float = 0.3  # loss weight of the language head (used when training has >= 2 languages)
    multi_weight: float = 0.3  # loss weight of the multi-speaker head
    family_weight: float = 0.3  # loss weight of the generator-family head (when ModelConfig.family_head is set)
    segments_per_epoch: int = 0  # segments drawn per epoch; 0 means one pass over the training audio
    mode: str = "scratch"  # scratch, full (all weights of base_model), frozen (backbone fixed) or head (AI head)
    base_model: str = ""  # model directory to fine-tune from; empty trains from scratch
    select_on: str = "eer"  # model selection: validation EER, accuracy at probability 0.5, or last (fixed budget)
    seed: int = 0  # seed of initialisation, sampling, augmentation and dropout
    num_workers: int = 0  # DataLoader worker processes (0 = in the training process)
    threads: int = 0  # torch CPU threads while training (0 = leave torch's setting)
    sam: str = ""  # sharpness-aware minimisation: "" (off), "sam" or "asam" (adaptive); doubles the cost of a step
    sam_rho: float = 0.05  # SAM neighbourhood radius (ASAM usually wants about 0.5)

    def __post_init__(self) -> None:
        name = type(self).__name__
        for field, low, high in (("epochs", 1, 100_000), ("patience", 1, 100_000), ("batch_size", 2, 65_536),
                                 ("segments_per_epoch", 0, 10**9), ("seed", 0, 2**31 - 1), ("num_workers", 0, 256),
                                 ("threads", 0, 1024)):
            config.check_range(name, field, getattr(self, field), low, high, integer=True)
        for field, low, high in (("weight_decay", 0, 10), ("warmup_fraction", 0, 0.9), ("mix_prob", 0, 1),
                                 ("language_weight", 0, 100), ("multi_weight", 0, 100), ("family_weight", 0, 100)):
            config.check_range(name, field, getattr(self, field), low, high)
        config.check_range(name, "lr", self.lr, 1e-8, 10.0)
        config.check_range(name, "sam_rho", self.sam_rho, 1e-6, 10.0)
        config.check_choice(name, "sam", self.sam, SAM_MODES)
        config.check_choice(name, "mode", self.mode, MODES)
        config.check_choice(name, "select_on", self.select_on, SELECT_ON)
        if self.mode == "scratch" and self.base_model:
            raise ValueError(f"{name}: mode='scratch' with base_model={self.base_model!r}; "
                             "use mode full, frozen or head to fine-tune it, or drop base_model")
        if self.mode != "scratch" and not self.base_model:
            raise ValueError(f"{name}: mode={self.mode!r} fine-tunes a trained model; set base_model to its directory")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None = None, **fields: Any) -> "TrainConfig":
        """Build from a dict of fields (plus keyword fields), refusing unknown names."""
        return config.from_dict(cls, data, **fields)


@dataclasses.dataclass
class TrainResult:
    """What fit() produced: the model directory and its validation figures."""

    model_dir: Path
    history: pd.DataFrame
    best_epoch: int
    best_val_eer: float
    val_auc: float
    threshold: float
    calibration: tuple[float, float]
    stopped_early: bool
    mode: str = "scratch"
    device: str = "cpu"
