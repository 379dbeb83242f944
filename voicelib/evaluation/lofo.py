"""Leave one family out: how the training recipe does on a generator family it never heard.

For each AI family F: train on the train split *without* F's clips, validate on the validation split and
the other families' test clips (the same recipe, budget and seed for every fold), then score every clip
of F against the test humans. LFCC-GMM is fitted and scored on the same folds, and fused with the
network by a logistic regression fitted on the fold's validation clips (voicelib.evaluation.fusion.fit_lr). The
pooled figure puts every fold's held-out AI scores against its human scores; the mean over families
weights each family alike. Used by the evaluation stage (optional,
`leave_one_family_out`) and by bench/bench_generalise.py.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from voicelib import metrics
from voicelib.audio.augment import AugmentConfig
from voicelib.data import manifest
from voicelib.errors import DataError
from voicelib.evaluation import clips
from voicelib.evaluation.fusion import fit_lr
from voicelib.files import RunDir, read_json, write_json
from voicelib.model.config import ModelConfig
from voicelib.model.gmm import LfccGmm
from voicelib.model.saving import CONFIG
from voicelib.scoring.load import load_detector
from voicelib.training.config import TrainConfig
from voicelib.training.fit import fit

log = logging.getLogger(__name__)

MIN_CLIPS = 5  # a family needs this many AI clips to be a fold


def recipe(model_dir: str | os.PathLike, **train_overrides: Any):
    """The TrainConfig and ModelConfig a trained model was made with (its family classes cleared for refitting)."""

    config = read_json(Path(model_dir) / CONFIG)
    train_config = TrainConfig.from_dict({**config.get("train_config", {}), **train_overrides})
    model_config = dataclasses.replace(ModelConfig.from_dict(config["model"]), families=())
    return train_config, model_config


def held_out_families(split: pd.DataFrame, *, min_clips: int = MIN_CLIPS) -> list[str]:
    """The AI families with at least `min_clips` clips whose fold leaves both classes to train and validate on."""
    fams = manifest.family_of(split)
    counts = fams[(split["label"] == "ai") & split["split"].isin(["train", "val", "test"])].value_counts()
    folds = []
    for family, n in counts.items():
        trainval, _ = fold(split, family)
        classes = trainval.groupby("split")["label"].nunique()
        if n >= min_clips and classes.get("train", 0) == 2 and classes.get("val", 0) == 2:
            folds.append(family)
    return sorted(folds)


def fold(split: pd.DataFrame, family: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(what the fold trains and validates on, the test humans with every AI clip of `family`).

    The family is out of training altogether, so all its clips are unseen, those of the train and val splits
    too (their sentences and source speakers were heard as human speech in training, which only makes the
    fold harder). The humans scored are the test split's: speakers never heard. The other families' test
    clips join validation (their sentences are the test split's, so they stay disjoint from training): a run
    whose splits hold families out keeps an AI family to validate on in every fold.
    """
    held = (split["label"] == "ai") & (manifest.family_of(split) == family)
    active = split["split"].isin(["train", "val", "test"])
    test_human = (split["split"] == "test") & (split["label"] == "human")
    trainval = split[active & ~held & ~test_human].reset_index(drop=True)
    trainval["split"] = trainval["split"].replace({"test": "val"})
    test = split[active & (held | test_human)].reset_index(drop=True)
    return trainval, test


def _waves(frame: pd.DataFrame, sr: int) -> list[np.ndarray]:
    """Every clip of the frame decoded once at the detector's rate; ValueError when one does not decode."""

    waves, ok = clips.load_waves(frame, sr)
    if not ok.all():
        raise ValueError(f"{int((~ok).sum())} clips did not decode; run the collection stage again")
    return waves


def _logits(det, waves: list[np.ndarray]) -> np.ndarray:
    """Mean AI logit per clip, scored as detection scores files."""

    return clips.score_waves(det, waves, chunk_duration=3.0, overlap=0.5)["logit"].to_numpy()


def _gmm_scores(det, trainval: pd.DataFrame, wave_sets: list[list[np.ndarray]], *, seed: int,
                components: int) -> list[pd.DataFrame]:
    """LFCC-GMM fitted on the fold's train rows, seeing what the fold's network sees; per wave set its LLR
    (`lfcc_gmm`) and its one-class score (`gmm_novelty`, the negative log-likelihood under the human GMM)."""

    train = trainval[trainval["split"] == "train"]
    waves, ok = clips.load_waves(train, det.sample_rate)
    labels = (train["label"] == "ai").to_numpy(dtype=int)[ok]
    gmm = LfccGmm(n_components=components, seed=seed).fit([det.prepared(w) for w, k in zip(waves, ok) if k], labels)
    out = []
    for waves in wave_sets:
        ll = gmm.class_logliks([det.prepared(w) for w in waves])
        out.append(pd.DataFrame({"lfcc_gmm": ll[:, 1] - ll[:, 0], "gmm_novelty": -ll[:, 0]}))
    return out


def _fused(val: pd.DataFrame, test: pd.DataFrame, *, seed: int) -> tuple[np.ndarray | None, str]:
    """Network logit and LFCC-GMM score fused by the logistic regression fusion fits on the fold's validation."""

    try:
        weights, bias = fit_lr(val.assign(split="val"), ["logit", "lfcc_gmm"], seed=seed)
    except DataError as exc:
        return None, str(exc)
    return test[["logit", "lfcc_gmm"]].to_numpy(dtype=float) @ np.asarray(weights) + bias, ""


def one_fold(split: pd.DataFrame, family: str, *, train_config, model_config: ModelConfig,
             augment_config: AugmentConfig, out_dir: str | os.PathLike, cache_dir: str | os.PathLike | None,
             device: str = "cpu", seed: int = 0, n_boot: int = 300, gmm_components: int = 0,
             keep_model: bool = False) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """Train without `family`, score all its clips against the test humans.

    Returns (summary row, per-clip test scores, per-clip scores of the fold's validation clips); the
    validation scores are what a fusion or a threshold for this fold may be fitted on.
    """

    trainval, test = fold(split, family)
    start = time.perf_counter()
    result = fit(trainval, train_config, out_dir=Path(out_dir) / "model", model_config=model_config,
                       augment_config=augment_config, device=device, cache_dir=cache_dir, progress=False)

    det = load_detector(result.model_dir, device=device)
    test_waves = _waves(test, det.sample_rate)  # decoded once: the network and LFCC-GMM score the same waves
    y = (test["label"] == "ai").to_numpy(dtype=int)
    logits = _logits(det, test_waves)
    rate = metrics.eer(y, logits)[0]
    ci = metrics.bootstrap_ci(y, logits, threshold=0.0, seed=seed, n_boot=n_boot, clusters=test["speaker"].to_numpy())
    row = {"family": family, "n_ai": int(y.sum()), "n_human": int((y == 0).sum()), "eer": rate, "eer_ci": ci["eer"],
           "roc_auc": metrics.roc_auc(y, logits), "val_eer": result.best_val_eer,
           "train_s": round(time.perf_counter() - start, 1),
           "train_families": sorted(set(manifest.family_of(trainval[trainval["label"] == "ai"])))}
    columns = ["path", "label", "speaker", "engine"]
    scores = test.reindex(columns=columns).assign(family=family, y=y, logit=logits)
    val = trainval[trainval["split"] == "val"].reset_index(drop=True)
    val_waves = _waves(val, det.sample_rate)
    val_scores = val.reindex(columns=columns).assign(family=family, clip_family=manifest.family_of(val).to_numpy(),
                                                     y=(val["label"] == "ai").to_numpy(dtype=int),
                                                     logit=_logits(det, val_waves))
    if gmm_components:  # LFCC-GMM on the same fold, and fused with the network on the fold's validation clips
        gmm_val, gmm = _gmm_scores(det, trainval, [val_waves, test_waves], seed=seed, components=gmm_components)
        row["lfcc_gmm_eer"] = metrics.eer(y, gmm["lfcc_gmm"])[0]
        row["gmm_novelty_eer"] = metrics.eer(y, gmm["gmm_novelty"])[0]
        scores = pd.concat([scores, gmm], axis=1)
        val_scores = pd.concat([val_scores, gmm_val], axis=1)
        fused, why = _fused(val_scores, scores, seed=seed)
        row["fused_eer"] = metrics.eer(y, fused)[0] if fused is not None else None
        if fused is not None:
            scores["fused"] = fused
        else:
            row["fused_note"] = why
    if not keep_model:
        shutil.rmtree(result.model_dir, ignore_errors=True)
    named = (("LFCC-GMM", "lfcc_gmm_eer"), ("fused", "fused_eer"))
    baselines = "".join(f", {name} {row[key]:.3f}" for name, key in named if row.get(key) is not None)
    log.info("without %s: EER %.3f [%.3f-%.3f] on %d AI vs %d human clips%s", family, rate, *ci["eer"], row["n_ai"],
             row["n_human"], baselines)
    return row, scores, val_scores


def pooled(scores: pd.DataFrame, column: str = "logit") -> float | None:
    """EER over every fold's held-out AI clips against its humans (each fold's scores from its own model)."""
    if scores.empty:
        return None
    return float(metrics.eer(scores["y"].to_numpy(), scores[column].to_numpy())[0])


def summarise(rows: list[dict], scores: pd.DataFrame) -> dict[str, Any]:
    """Mean over families and pooled EER, ours and LFCC-GMM's."""
    out: dict[str, Any] = {"folds": rows, "families": [r["family"] for r in rows]}
    out["mean_eer"] = float(np.mean([r["eer"] for r in rows])) if rows else None
    out["pooled_eer"] = pooled(scores)
    if rows and all("lfcc_gmm_eer" in r for r in rows):
        out["lfcc_gmm_mean_eer"] = float(np.mean([r["lfcc_gmm_eer"] for r in rows]))
        out["lfcc_gmm_pooled_eer"] = pooled(scores, "lfcc_gmm")
    if rows and all("gmm_novelty_eer" in r for r in rows):
        out["gmm_novelty_mean_eer"] = float(np.mean([r["gmm_novelty_eer"] for r in rows]))
        out["gmm_novelty_pooled_eer"] = pooled(scores, "gmm_novelty")
    if rows and all(r.get("fused_eer") is not None for r in rows):
        out["fused_mean_eer"] = float(np.mean([r["fused_eer"] for r in rows]))
        out["fused_pooled_eer"] = pooled(scores, "fused")
    return out


def run(split: pd.DataFrame, *, train_config, model_config: ModelConfig, augment_config: AugmentConfig,
        out_dir: str | os.PathLike, cache_dir: str | os.PathLike | None = None, device: str = "cpu", seed: int = 0,
        n_boot: int = 300, gmm_components: int = 16, families: list[str] | None = None) -> dict[str, Any]:
    """Every fold; writes lofo.json, lofo_scores.csv and lofo_val_scores.csv under out_dir.

    lofo.json is rewritten after each fold: a long run keeps the folds it finished.
    """
    run_files = RunDir(out_dir)
    families = held_out_families(split) if families is None else families
    if not families:
        raise ValueError(f"leave one family out: no AI family has {MIN_CLIPS}+ clips with another family left to "
                         "train on; collect more engines (--tts auto) or a larger --limit")
    rows, parts, val_parts = [], [], []
    for family in families:
        row, scores, val_scores = one_fold(split, family, train_config=train_config, model_config=model_config,
                                           augment_config=augment_config, out_dir=run_files.lofo_folds / family,
                                           cache_dir=cache_dir, device=device, seed=seed, n_boot=n_boot,
                                           gmm_components=gmm_components)
        rows.append(row)
        parts.append(scores)
        val_parts.append(val_scores)
        result = {**summarise(rows, pd.concat(parts, ignore_index=True)), "train_config": train_config.to_dict(),
                  "complete": len(rows) == len(families)}
        write_json(run_files.lofo, result)
    pd.concat(parts, ignore_index=True).to_csv(run_files.lofo_scores, index=False)
    pd.concat(val_parts, ignore_index=True).to_csv(run_files.lofo_val_scores, index=False)
    return result
