"""A shipped model whose operating point is its own: K models on speaker- and family-disjoint folds, one ensemble.

The refit (stage 05's default) trains the shipped model on every clip, so nothing is left to set its threshold on
and it borrows the evaluated model's. Cross-fitting keeps the property that matters: every clip is scored, through
the detection path, by a model that never heard its speaker or its AI family, and the threshold, the Platt
calibration and the inconclusive band are fitted on those out-of-fold scores. The K fold models ship together as
a mean ensemble (`ensemble.json`; each member carries the same calibration, so the mean of their calibrated logits
is on the scale the threshold was fitted on). K trainings cost K times one.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from voicelib import metrics
from voicelib.audio import augment
from voicelib.data.manifest import family_of, label_array
from voicelib.errors import DataError
from voicelib.evaluation import lofo
from voicelib.files import RunDir, read_json, write_json
from voicelib.model.saving import CONFIG
from voicelib.scoring.fusion import ENSEMBLE_FILE
from voicelib.scoring.load import load_detector
from voicelib.training.launch import fit

log = logging.getLogger(__name__)

MONITOR_PER_CLASS = 10  # clips of each class fit() logs a (training) figure on; nothing is selected on them


def assign_folds(frame: pd.DataFrame, k: int, *, seed: int) -> np.ndarray:
    """Fold of every clip: human speakers and AI families each dealt to the K folds (a family stays in one fold)."""
    rng = np.random.default_rng(seed)
    human = (frame["label"] == "human").to_numpy()
    speakers = sorted(set(frame.loc[human, "speaker"].astype(str)))
    families = sorted(set(family_of(frame[~human])))
    if min(len(speakers), len(families)) < k:
        raise DataError(f"cross-fitting with {k} folds needs {k} human speakers and {k} AI families, have "
                        f"{len(speakers)} and {len(families)}; lower crossfit_folds or collect more engines")
    speaker_fold = {s: i % k for i, s in enumerate(rng.permutation(speakers))}
    family_fold = {f: i % k for i, f in enumerate(rng.permutation(families))}
    return np.where(human, frame["speaker"].astype(str).map(speaker_fold),
                    family_of(frame).map(family_fold)).astype(int)


def _training_frame(others: pd.DataFrame, *, seed: int) -> pd.DataFrame:
    """The other folds as training rows, plus a few of each class again as the (non-selecting) monitor."""
    monitor = pd.concat([part.sample(n=min(MONITOR_PER_CLASS, len(part)), random_state=seed)
                         for _, part in others.groupby("label")])
    return pd.concat([others.assign(split="train"), monitor.assign(split="val")], ignore_index=True)


def out_of_fold(frame: pd.DataFrame, folds: np.ndarray, run: RunDir, out_dir: Path, *, cache_dir, device: str,
                nproc_per_node: int, seed: int) -> tuple[list[Path], np.ndarray]:
    """Train one model per fold without it; score its clips with that model (the detection path); the logits."""
    evaluated = read_json(run.model / CONFIG)
    epochs = max(int(evaluated.get("best_epoch") or evaluated.get("train_config", {}).get("epochs", 1)), 1)
    train_config, model_config = lofo.recipe(run.model, epochs=epochs, select_on="last")
    aug = augment.read_config(run.augment_config)
    logits, members = np.full(len(frame), np.nan), []
    for k in sorted(set(folds.tolist())):
        held = folds == k
        result = fit(_training_frame(frame[~held], seed=seed), train_config, nproc_per_node=nproc_per_node,
                     out_dir=out_dir / f"fold{k}", model_config=model_config, augment_config=aug, device=device,
                     cache_dir=cache_dir, progress=False)
        det = load_detector(result.model_dir, device=device, backend="torch")
        scored = det.score_files(list(frame.loc[held, "path"]), chunk_duration=model_config.segment_seconds)
        logits[held] = [r.get("aiLogit", np.nan) for r in scored]
        members.append(result.model_dir)
        log.info("fold %d: trained on %d clips, scored %d held-out clips", k, int((~held).sum()), int(held.sum()))
    return members, logits


def crossfit(split: pd.DataFrame, run_dir: str | os.PathLike, *, k: int, cache_dir: str | os.PathLike | None = None,
             device: str = "cpu", nproc_per_node: int = 1, seed: int = 0) -> Path:
    """Fit K fold models, their out-of-fold operating point, and write them as one ensemble directory."""
    run = RunDir(run_dir)
    frame = split[split["split"].isin(["train", "val", "test"])].reset_index(drop=True)
    folds = assign_folds(frame, k, seed=seed)
    out_dir = run.final_model
    members, logits = out_of_fold(frame, folds, run, out_dir / "members", cache_dir=cache_dir, device=device,
                                  nproc_per_node=nproc_per_node, seed=seed)
    ok = np.isfinite(logits)
    y = label_array(frame)[ok]
    rate, threshold = metrics.eer(y, logits[ok])
    (a, b), band, refused = metrics.calibrate(y, logits[ok], threshold, source="the out-of-fold scores")
    point = {"threshold": float(threshold), "calibration": {"a": a, "b": b}, "band": band, "oof_eer": float(rate),
             "n_clips": int(ok.sum()), "n_ai": int(y.sum()), "n_human": int((y == 0).sum()), "folds": k,
             "calibration_refused": refused, "fitted_on": "out-of-fold scores of the shipped ensemble's own members",
             "scoring": "detection path, each clip scored by the member that never heard its speaker or family"}
    for member in members:
        config = read_json(member / CONFIG)
        config.update(threshold=point["threshold"], calibration=point["calibration"], band=band,
                      operating_point=point)
        write_json(member / CONFIG, config)
    write_json(out_dir / ENSEMBLE_FILE, {
        "format": "voicelib-fusion", "format_version": 1, "combine": "mean", "weights": [], "bias": 0.0,
        "threshold": float(a * threshold + b), "threshold_scale": "logit", "fitted_on": "out-of-fold",
        "band": band, "operating_point": point,
        "members": [{"name": m.name, "kind": "network", "path": os.path.relpath(m, out_dir)} for m in members]})
    log.info("cross-fitted ensemble of %d: out-of-fold EER %.3f on %d clips, threshold %.3f (logit)", k, rate,
             point["n_clips"], threshold)
    return out_dir


def summary(out_dir: Path) -> dict[str, Any]:
    """What final.json says of a cross-fitted ensemble."""
    spec = read_json(out_dir / ENSEMBLE_FILE)
    point = spec["operating_point"]
    return {"n_clips": point["n_clips"], "epochs": None, "operating_point": point, "members": len(spec["members"])}
