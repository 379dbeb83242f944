"""Stage 03, fine-tune: train (or fine-tune) the detector on the train split, selected on validation.

The model is registered in the store but not promoted: promotion happens once, after evaluation, in the stage
that ships the model (05_final_fit).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from voicelib.audio import augment
from voicelib.data.manifest import read_manifest
from voicelib.files import RunDir, write_json
from voicelib.model import store
from voicelib.model.config import ModelConfig
from voicelib.stages.collect import run_languages
from voicelib.training import launch
from voicelib.training.config import TrainConfig, TrainResult


def load_split(run: RunDir) -> pd.DataFrame:
    """The manifest stage 01 wrote."""
    return read_manifest(run.manifest)


def configs(training: dict[str, Any], architecture: dict[str, Any], *, seed: int) -> tuple[TrainConfig, ModelConfig]:
    """The run's TrainConfig and ModelConfig: the defaults with the parameters' changes (checked)."""
    return TrainConfig.from_dict(training, seed=seed), ModelConfig.from_dict(architecture)


def train(run: RunDir, split: pd.DataFrame, train_config: TrainConfig, model_config: ModelConfig, *,
          data_root: str | os.PathLike, device: str, nproc_per_node: int = 1, resume: bool = False) -> TrainResult:
    """Train into run/model with stage 02's augmentation (in `nproc_per_node` DDP processes when > 1)."""
    result = launch.fit(split, train_config, nproc_per_node=nproc_per_node, out_dir=run.model,
                        model_config=model_config, augment_config=augment.read_config(run.augment_config),
                        device=device, cache_dir=Path(data_root) / ".cache", resume=resume, progress=False)
    result.history.to_csv(run.history, index=False)
    return result


def register(run: RunDir, result: TrainResult, *, models_root: str | os.PathLike, language: str,
             languages: list[str] = ()) -> dict[str, Any]:
    """Register the trained model in the store for each of the run's languages (not promoted); write train.json."""
    entries = {name: str(store.register(result.model_dir, root=models_root, language=name, promote=False))
               for name in run_languages(language, list(languages))}
    entry = next(iter(entries.values()))
    summary = {"model_dir": Path(result.model_dir).name, "store_entry": entry, "store_entries": entries,
               "promoted": False,
               "best_epoch": result.best_epoch, "best_val_eer": result.best_val_eer, "val_auc": result.val_auc,
               "threshold": result.threshold, "calibration": list(result.calibration),
               "stopped_early": result.stopped_early, "epochs_run": len(result.history), "mode": result.mode,
               "device": result.device}
    write_json(run.train_summary, summary)
    return summary
