"""The shipped model: the evaluated recipe fitted once more on every collected clip.

The evaluated model (trained on the train split, selected on validation, measured on test) says how well
the recipe works. The model users get should also have heard every engine, voice and family collected,
including the families held out to measure generalisation. So the same recipe (TrainConfig, ModelConfig,
augmentation) is fitted again on the train, validation and test clips for the evaluated model's best number
of epochs, keeping the last epoch (nothing is held out to select on). Its operating point (threshold, Platt
calibration, inconclusive band) comes from held-out scores: the evaluated model's validation and test
scores, never the final model's scores on its own training clips. That assumes the same recipe gives the
refitted model a similar score scale; the report says so, and which figures belong to which model.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pandas as pd

from voicelib import metrics
from voicelib.audio import augment
from voicelib.data.manifest import read_manifest
from voicelib.evaluation import lofo
from voicelib.files import RunDir, read_json, write_json
from voicelib.metrics import calibrate
from voicelib.model import store
from voicelib.model.saving import CONFIG, METRICS
from voicelib.stages import crossfit
from voicelib.stages.collect import run_languages
from voicelib.training.launch import fit

log = logging.getLogger(__name__)


def load_split(run: RunDir) -> pd.DataFrame:
    """The manifest stage 01 wrote."""
    return read_manifest(run.manifest)


def heldout_operating_point(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Threshold (EER point, logit), Platt calibration and band from the evaluated model's val and test scores."""
    run = RunDir(run_dir)
    files = [path for path in (run.val_scores, run.scores) if path.is_file()]
    if not run.scores.is_file():
        raise FileNotFoundError(f"{run.scores}: no test scores; run the evaluation stage (04) first")
    scores = pd.concat([pd.read_csv(f, usecols=["label", "ai_logit"]) for f in files], ignore_index=True)
    y, logit = (scores["label"] == "ai").to_numpy(dtype=int), scores["ai_logit"].to_numpy(dtype=float)
    n_ai, n_human = int(y.sum()), int((y == 0).sum())
    if min(n_ai, n_human) == 0:
        raise ValueError(f"{run_dir}: the held-out scores hold {n_ai} AI and {n_human} human clips; both classes "
                         "are needed for an operating point")
    rate, threshold = metrics.eer(y, logit)
    (a, b), band, refused = calibrate(y, logit, threshold, source="the held-out set")
    return {"threshold": float(threshold), "calibration": {"a": float(a), "b": float(b)}, "band": band,
            "heldout_eer": float(rate), "n_clips": int(y.size), "n_ai": n_ai, "n_human": n_human,
            "calibration_refused": refused, "from": [f.name for f in files],
            "note": "scores of the evaluated model on clips it never trained on (validation and test)"}


def training_frame(split: pd.DataFrame) -> pd.DataFrame:
    """Every clip of the train, val and test splits as training rows, plus the val rows again as a monitor.

    fit() logs a validation figure each epoch; here the monitor clips are also training clips, so it is a
    training figure and selects nothing (select_on="last").
    """
    usable = split[split["split"].isin(["train", "val", "test"])]
    return pd.concat([usable.assign(split="train"), usable[usable["split"] == "val"]], ignore_index=True)


def final_fit(split: pd.DataFrame, run_dir: str | os.PathLike, *, out_dir: str | os.PathLike | None = None,
              cache_dir: str | os.PathLike | None = None, device: str = "cpu", nproc_per_node: int = 1,
              progress: bool = False) -> Path:
    """Fit the run's recipe on all its clips; write the model dir with the held-out operating point; return it."""

    run_dir = Path(run_dir)
    evaluated = RunDir(run_dir).model
    meta = read_json(evaluated / CONFIG)
    epochs = max(int(meta.get("best_epoch") or meta.get("train_config", {}).get("epochs", 1)), 1)
    train_config, model_config = lofo.recipe(evaluated, epochs=epochs, select_on="last")
    point = heldout_operating_point(run_dir)  # before training: a run without test scores fails fast
    frame = training_frame(split)
    out_dir = Path(out_dir) if out_dir else RunDir(run_dir).final_model
    rows = frame[frame["split"] == "train"]
    log.info("final fit on all %d clips (%d AI, %d human) for %d epochs, the evaluated model's best", len(rows),
             int((rows["label"] == "ai").sum()), int((rows["label"] == "human").sum()), epochs)
    result = fit(frame, train_config, nproc_per_node=nproc_per_node, out_dir=out_dir,
                             model_config=model_config, device=device, cache_dir=cache_dir, progress=progress,
                             augment_config=augment.read_config(RunDir(run_dir).augment_config))
    evaluated_metrics = RunDir(run_dir).read(RunDir(run_dir).metrics)
    provenance = {"trained_on": "every clip of the run's train, validation and test splits",
                  "n_clips": len(rows), "epochs": epochs, "run": run_dir.name,
                  "evaluated_model": f"{run_dir.name}/{evaluated.name}",  # names only: the model may ship elsewhere
                  "operating_point": point}
    config = read_json(result.model_dir / CONFIG)
    config.update(threshold=point["threshold"], calibration=point["calibration"], band=point["band"],
                  final_fit=provenance)
    config["data"] = {k: v for k, v in config.get("data", {}).items() if not k.startswith("val_")}
    write_json(result.model_dir / CONFIG, config)
    summary = {"final_fit": True, "epochs_run": len(result.history), "threshold": point["threshold"],
               "calibration": point["calibration"], "band": point["band"],
               "calibration_refused": point["calibration_refused"], "operating_point": point,
               "evaluated_model_test": {k: evaluated_metrics.get(k) for k in ("eer", "roc_auc", "n_test")}
               | {k: (evaluated_metrics.get(k) or {}).get("eer") for k in ("seen_engine_eer", "unseen_engine_eer")},
               "note": "no figure of this model is measured on held-out clips: it trained on all of them; the "
                       "test figures are the evaluated model's"}
    write_json(result.model_dir / METRICS, summary)
    log.info("final model: threshold %.3f (logit) from %d held-out clips of the evaluated model", point["threshold"],
             point["n_clips"])
    return result.model_dir


def ship(run: RunDir, split: pd.DataFrame, *, enabled: bool, models_root: str | os.PathLike, language: str,
         promote: bool, data_root: str | os.PathLike, device: str = "cpu", nproc_per_node: int = 1,
         languages: list[str] = (), crossfit_folds: int = 0, seed: int = 0) -> dict[str, Any]:
    """The stage: fit and register the final model (or take the evaluated one), promote it; write final.json.

    This is the one place a run promotes a model in the store: after evaluation, the model that ships (for each of
    the run's languages in a multilingual run).
    """
    train_summary = run.read(run.train_summary)
    names = run_languages(language, list(languages))
    if not enabled:
        entries = train_summary.get("store_entries") or {language: train_summary.get("store_entry")}
        for name, entry in entries.items():
            if promote and entry:
                store.promote(models_root, name, Path(entry).name)
        info = {"enabled": False, "shipped": "evaluated", "store_entry": train_summary.get("store_entry"),
                "store_entries": entries, "promoted": bool(promote and train_summary.get("store_entry")),
                "note": "final_fit=False: the shipped model is the evaluated one (trained on the train split)"}
        write_json(run.final_summary, info)
        return info
    options = {"cache_dir": Path(data_root) / ".cache", "device": device, "nproc_per_node": nproc_per_node}
    if crossfit_folds >= 2:
        model_dir = crossfit.crossfit(split, run.root, k=crossfit_folds, seed=seed, **options)
        details = crossfit.summary(model_dir)
    else:
        model_dir = final_fit(split, run.root, **options)
        details = {k: read_json(model_dir / CONFIG)["final_fit"][k] for k in ("n_clips", "epochs", "operating_point")}
    entries = {name: str(store.register(model_dir, root=models_root, language=name, promote=promote)) for name in names}
    info = {"enabled": True, "shipped": "crossfit" if crossfit_folds >= 2 else "final", "model_dir": model_dir.name,
            "store_entry": entries[names[0]], "store_entries": entries, "promoted": promote,
            "evaluated_store_entry": train_summary.get("store_entry"), **details}
    write_json(run.final_summary, info)
    return info
