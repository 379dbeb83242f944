"""Train a small detector on one language of ../shared/speech for a few CPU minutes and evaluate it honestly.

Usage: .venv/bin/python bench/bench_eval_real.py [--language english] [--epochs 6] [--segments 640]
Speaker/group-disjoint split (splits.assign_splits), train.fit on CPU, then evaluate.evaluate_run with
both baselines and every robustness condition. Full outputs (metrics.json, scores.csv, figures/) go to
bench/out/eval_real/ (git-ignored); a summary goes to bench/results/eval_real.json.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import fitting  # noqa: E402  (bench/fitting.py, beside this script)
import pandas as pd  # noqa: E402

from voicelib.data import splits  # noqa: E402
from voicelib.files import write_json  # noqa: E402

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("VOICELIB_SHARED_SPEECH", HERE.parents[1] / "shared" / "speech"))


def shared_manifest(language: str) -> pd.DataFrame:
    """The shared corpus' rows of one language as a voicelib manifest (absolute paths, `duration`)."""
    from voicelib.data import manifest

    df = pd.read_csv(SHARED / "manifest.csv", dtype=str, keep_default_na=False)
    df = df[df["language"] == language].copy()
    df["path"] = [str(SHARED / p) for p in df["path"]]
    df["duration"] = df["duration_s"].astype(float)
    df["sample_rate"] = 16000
    return manifest.to_frame(df.drop(columns=["duration_s"]))


def split_counts(split: pd.DataFrame) -> dict:
    """Clips, minutes and speakers per split and label."""
    out = {}
    for (s, label), part in split.groupby(["split", "label"]):
        out[f"{s}/{label}"] = {"clips": len(part), "minutes": round(part["duration"].sum() / 60, 2),
                               "speakers": part["speaker"].nunique(), "engines": sorted(part["engine"].unique())}
    return out


def summary(metrics: dict, split: pd.DataFrame, args: argparse.Namespace, train_s: float, eval_s: float) -> dict:
    """The figures a reader needs, beside the machine they come from."""
    from bench_detect import machine

    keep = ("eer", "roc_auc", "threshold", "accuracy", "precision", "recall", "f1", "fpr", "fnr", "confusion",
            "n_test", "ci", "calibration", "inconclusive", "robustness", "shortcut_warning", "val_check")
    base = {name: {k: v for k, v in b.items() if k in ("eer", "roc_auc", "accuracy", "verdict", "weights")}
            for name, b in metrics["baselines"].items()}
    return {"language": args.language, "seed": args.seed, "split": split_counts(split),
            "training": {"model": "ModelConfig.light() (width 16)", "epochs": args.epochs,
                         "segments_per_epoch": args.segments, "seconds": round(train_s, 1)},
            "evaluation_seconds": round(eval_s, 1), **{k: metrics.get(k) for k in keep}, "baselines": base,
            "breakdowns": metrics["breakdowns"], "outputs": str(args.out), "machine": machine("cpu")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--language", default="english")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--segments", type=int, default=640, help="training segments per epoch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "out" / "eval_real")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch

    from voicelib.evaluation import evaluate
    from voicelib.model.config import ModelConfig

    torch.set_num_threads(args.threads)
    split = splits.assign_splits(shared_manifest(args.language), seed=args.seed, val_fraction=0.15, test_fraction=0.2)
    splits.check_leakage(split)
    start = time.perf_counter()
    result = fitting.fit(split, out_dir=args.out / "model", model_config=ModelConfig.light(), epochs=args.epochs,
                       lr=2e-3, batch_size=32, seed=args.seed, device="cpu", cache_dir=HERE / "out" / "cache",
                       segments_per_epoch=args.segments, patience=args.epochs, progress=False)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    metrics = evaluate.evaluate_run(result.model_dir, split, out_dir=args.out, device="cpu", seed=args.seed)
    eval_s = time.perf_counter() - start
    out = HERE / "results" / f"eval_real{'' if args.language == 'english' else '_' + args.language}.json"
    write_json(out, summary(metrics, split, args, train_s, eval_s))
    print(f"test EER {metrics['eer']:.3f} (LFCC-GMM {metrics['baselines']['lfcc_gmm']['eer']:.3f}, "
          f"shortcut probe {metrics['baselines']['shortcut_probe']['eer']:.3f}); wrote {out} and {args.out}")


if __name__ == "__main__":
    main()
