"""The benchmarks' one way to call fit with flat keyword arguments (TrainConfig fields and run options mixed)."""
from __future__ import annotations

import dataclasses
from typing import Any

from voicelib.training import fit as training
from voicelib.training.config import TrainConfig, TrainResult

RUNTIME = ("out_dir", "model_config", "augment_config", "device", "cache_dir", "resume", "progress", "on_epoch_end")


def fit(frame, **kw: Any) -> TrainResult:
    """fit(frame, TrainConfig(<fields in kw>), <options in kw>)."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    config = {k: str(v) if k == "base_model" else v for k, v in kw.items() if k in fields}
    unknown = set(kw) - fields - set(RUNTIME)
    if unknown:
        raise ValueError(f"bench fit: unknown arguments {sorted(unknown)}")
    return training.fit(frame, TrainConfig(**config), **{k: v for k, v in kw.items() if k in RUNTIME})
