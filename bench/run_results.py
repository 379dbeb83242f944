"""Results on real speech: our pipeline, the common recipe and LFCC-GMM on the same splits, leave-one-engine-out.

    .venv/bin/python bench/run_results.py                        # hindi malayalam telugu english
    .venv/bin/python bench/run_results.py --languages english --epochs 4 --width 16

For each language with both classes in ../shared/speech:
1. the full pipeline (`run_pipeline.py`, offline: the folder's clips plus espeak-ng reading the same
   sentences) -> test EER/ROC-AUC with bootstrap intervals, per-engine and robustness figures, the
   LFCC-GMM baseline and the shortcut probe, wall time of each stage;
2. the recipe of existing open projects on the same data: ResNet18 on 3 s log-mel with per-clip
   normalisation, a random file-level train/val split of our non-test clips, no augmentation, one task,
   model picked by validation accuracy at 0.5 -- evaluated on our speaker-disjoint test split;
3. leave-one-engine-out where there are several AI engines: train without one engine, test on all of its
   clips against the human test clips (our model and LFCC-GMM).
Writes bench/out/results/ (runs, git-ignored), bench/results/results.json and bench/results/results_tables.md.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

import fitting  # noqa: E402  (bench/fitting.py)
from machine import machine  # noqa: E402  (bench/machine.py, beside this script)

from voicelib.audio.augment import AugmentConfig  # noqa: E402
from voicelib.data import manifest  # noqa: E402
from voicelib.evaluation import evaluate  # noqa: E402
from voicelib.files import read_json, write_json  # noqa: E402
from voicelib.model.config import ModelConfig  # noqa: E402

SHARED = Path(os.environ.get("VOICELIB_SHARED_SPEECH", REPO.parent / "shared" / "speech"))
OUT = REPO / "bench" / "out" / "results"
RESULTS = REPO / "bench" / "results"
log = logging.getLogger("run_results")


def run_pipeline(language: str, args: argparse.Namespace) -> Path:
    """Run the five stages into OUT/<language>/pipeline (resuming a finished or interrupted run)."""
    run_dir = OUT / language / "pipeline"
    config = {"human_sources": [], "tts_engines": ["espeak"], "local_dirs": [str(SHARED)],
              "training": {"epochs": args.epochs}, "architecture": {"width": args.width}, "promote": False,
              "models_root": str(OUT / "models"), "seed": args.seed}
    config_path = OUT / language / "params.yaml"
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(yaml.safe_dump(config))
    cmd = [sys.executable, str(REPO / "run_pipeline.py"), "--language", language, "--config", str(config_path),
           "--run-dir", str(run_dir)]
    log.info("%s: %s", language, " ".join(cmd))
    subprocess.run(cmd, cwd=REPO, check=True)
    return run_dir


def fit_and_evaluate(split: pd.DataFrame, out: Path, args: argparse.Namespace, *, recipe: bool,
                     robust: bool) -> dict:
    """Train on split's train/val, evaluate on its test split; return headline figures and timings."""
    start = time.perf_counter()
    common = {"out_dir": out / "model", "model_config": ModelConfig(width=args.width), "epochs": args.epochs,
              "seed": args.seed, "device": "cpu", "cache_dir": REPO / "data" / ".cache", "progress": False}
    if recipe:
        result = fitting.fit(split, **common, augment_config=AugmentConfig.none(), mix_prob=0.0, language_weight=0.0,
                             multi_weight=0.0, select_on="accuracy")
    else:
        result = fitting.fit(split, **common)
    train_s = time.perf_counter() - start
    metrics = evaluate.evaluate_run(result.model_dir, split, out_dir=out, seed=args.seed, robust=robust,
                                    baselines=not recipe, n_boot=1000)
    return {**headline(metrics), "val_eer": result.best_val_eer, "best_epoch": result.best_epoch,
            "train_seconds": round(train_s, 1), "eval_seconds": round(time.perf_counter() - start - train_s, 1)}


def headline(metrics: dict) -> dict:
    """The figures the tables need from a metrics.json."""
    base = metrics.get("baselines") or {}
    return {"eer": metrics["eer"], "roc_auc": metrics["roc_auc"], "accuracy": metrics["accuracy"],
            "ci": metrics["ci"], "n_test": metrics["n_test"],
            "n_test_ai": metrics["confusion"]["tp"] + metrics["confusion"]["fn"],
            "n_test_human": metrics["confusion"]["tn"] + metrics["confusion"]["fp"],
            "engines": {k: {c: v.get(c) for c in ("n", "eer", "roc_auc")}
                        for k, v in metrics["breakdowns"].get("engine", {}).items()},
            "robustness": {k: v["eer"] for k, v in metrics.get("robustness", {}).items()},
            "lfcc_gmm": {k: base.get("lfcc_gmm", {}).get(k) for k in ("eer", "roc_auc")} if base else None,
            "shortcut_probe": {k: base["shortcut_probe"].get(k)
                               for k in ("eer", "roc_auc", "warning")} if base else None}


def recipe_split(split: pd.DataFrame, *, seed: int, val_share: float = 0.2) -> pd.DataFrame:
    """The common recipe's split: our non-test clips shuffled file by file into train/val; our test split kept."""
    out = split.copy()
    pool = out["split"].isin(["train", "val"]).to_numpy()
    rng = np.random.default_rng(seed)
    out.loc[pool, "split"] = np.where(rng.random(pool.sum()) < val_share, "val", "train")
    return out


def loeo_split(split: pd.DataFrame, engine: str, *, seed: int, val_share: float = 0.2) -> pd.DataFrame:
    """Hold one AI engine out: test on all its clips against the human test clips; the other engines'
    clips (from any split) train, with a seeded share of their groups kept for validation."""
    out = split.copy()
    active = out["split"] != "excluded"
    ai = (out["label"] == "ai") & active
    held = ai & (out["engine"] == engine)
    rest = ai & ~held
    out.loc[held, "split"] = "test"
    out.loc[rest, "split"] = "train"
    rng = np.random.default_rng(seed)
    groups = out.loc[rest, "group"].unique()
    if len(groups) >= 5:
        val = rest & out["group"].isin(rng.choice(groups, max(1, round(len(groups) * val_share)), replace=False))
    else:  # too few groups to hold whole ones out: validate on a share of the clips
        val = out.index.isin(rng.choice(out.index[rest], max(1, round(rest.sum() * val_share)), replace=False))
    out.loc[val, "split"] = "val"
    return out


def engines_of(split: pd.DataFrame, *, min_clips: int = 10) -> list[str]:
    """AI engines with at least `min_clips` usable clips."""
    ai = split[(split["label"] == "ai") & (split["split"] != "excluded")]
    counts = ai["engine"].value_counts()
    return sorted(counts[counts >= min_clips].index)


def run_language(language: str, args: argparse.Namespace) -> dict:
    """Pipeline, recipe and leave-one-engine-out for one language."""
    run_dir = run_pipeline(language, args)
    split = manifest.read_manifest(run_dir / "manifest.csv")
    stages = read_json(run_dir / "stages.json")["stages"]
    result = {"pipeline": {**headline(read_json(run_dir / "metrics.json")), "run_dir": str(run_dir.relative_to(REPO)),
                           "stage_seconds": {k: v.get("duration_s") for k, v in stages.items()},
                           "data": split.groupby(["split", "label"]).size().unstack(fill_value=0).to_dict()}}
    log.info("%s: common recipe", language)
    result["recipe"] = fit_and_evaluate(recipe_split(split, seed=args.seed), OUT / language / "recipe", args,
                                        recipe=True, robust=True)
    engines = engines_of(split)
    result["loeo"] = {}
    if len(engines) >= 2 and not args.skip_loeo:
        for engine in engines:
            log.info("%s: leave out %s", language, engine)
            result["loeo"][engine] = fit_and_evaluate(loeo_split(split, engine, seed=args.seed),
                                                      OUT / language / f"loeo_{engine}", args,
                                                      recipe=False, robust=False)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--languages", nargs="+", default=["hindi", "malayalam", "telugu", "english"])
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--width", type=int, default=24)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-loeo", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if not SHARED.is_dir():
        sys.exit(f"run_results: {SHARED} not found; set VOICELIB_SHARED_SPEECH to the shared speech folder")
    path = RESULTS / "results.json"
    report = read_json(path) if path.is_file() else {"languages": {}}
    report.update(machine=machine(), command=" ".join([Path(sys.executable).name, *sys.argv]),
                  settings={"epochs": args.epochs, "width": args.width, "seed": args.seed})
    for language in args.languages:
        start = time.perf_counter()
        report["languages"][language] = {**run_language(language, args), "seconds": round(time.perf_counter() - start)}
        write_json(path, report)  # after each language, so an interrupted run keeps what it finished
    from tables import write_tables  # bench/tables.py

    write_tables(report, RESULTS / "results_tables.md")
    print(json.dumps({k: v["pipeline"]["eer"] for k, v in report["languages"].items()}))


if __name__ == "__main__":
    main()
