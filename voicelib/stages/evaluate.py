"""Stage 04, evaluate: the trained model on the test split (threshold from validation), with baselines.

Optionally leave one family out: the run's own recipe trained once per AI family without it, every clip of
that family scored against the test humans (one training per family; `lofo_training` shortens them).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pandas as pd

from voicelib.audio import augment
from voicelib.data.manifest import read_manifest
from voicelib.evaluation import evaluate, lofo
from voicelib.files import RunDir
from voicelib.report.sections import lofo_table

log = logging.getLogger(__name__)


def load_split(run: RunDir) -> pd.DataFrame:
    """The manifest stage 01 wrote."""
    return read_manifest(run.manifest)


def test(run: RunDir, split: pd.DataFrame, *, device: str, seed: int, n_boot: int, robustness: bool,
         baselines: bool, gmm_components: int) -> dict[str, Any]:
    """Evaluate run/model on the test split; writes metrics.json, scores.csv and val_scores.csv."""
    return evaluate.evaluate_run(run.model, split, out_dir=run.root, device=device, seed=seed, n_boot=n_boot,
                                 robust=robustness, baselines=baselines, gmm_components=gmm_components)


def leave_one_family_out(run: RunDir, split: pd.DataFrame, *, enabled: bool, training: dict[str, Any],
                         data_root: str | os.PathLike, device: str, seed: int,
                         gmm_components: int) -> pd.DataFrame:
    """One training per AI family without it (the run's recipe with `training` changes); one row per family.

    Empty, and nothing written, when not enabled.
    """
    if not enabled:
        log.info("leave one family out: off (set leave_one_family_out=True, or --set leave_one_family_out=true)")
        return pd.DataFrame()
    train_config, model_config = lofo.recipe(run.model, **(training or {}))
    result = lofo.run(split, train_config=train_config, model_config=model_config,
                      augment_config=augment.read_config(run.augment_config), out_dir=run.root,
                      cache_dir=Path(data_root) / ".cache", device=device, seed=seed,
                      gmm_components=gmm_components)
    return lofo_table(result)
