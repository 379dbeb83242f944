"""Score fusion and ensembles on real speech, each beside its members on the same test clips; and attribution.

    .venv/bin/python bench/bench_fusion.py [--language english] [--epochs 8] [--segments 1024]

On one language of ../shared/speech (speaker/group/sentence-disjoint splits, seed 0): trains two small
networks on a tiny budget (seeds 0 and 1; the first with the generator-family head), registers both in a
scratch model store, fits the LFCC-GMM on the train split, and builds from the store's versions:
network + GMM (LR on validation), the two versions' mean ensemble, their LR ensemble, and all three (LR).
Every member and fusion is scored on the same test clips: EER with a 95 % bootstrap interval, ROC-AUC; also
on the test AI clips of engines seen in training and of those never seen, each against the test humans.
Also the family head's accuracy on the test AI clips (`--family-column engine` attributes engines: the
shared corpus's English AI engines, tortoise and edge-neural, are one family, neural). One torch thread.
Writes bench/results/fusion.json with the machine named.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from machine import machine  # noqa: E402

from voicelib.audio.augment import AugmentConfig  # noqa: E402
from voicelib.data import manifest, splits  # noqa: E402
from voicelib.evaluation import clips, evaluate  # noqa: E402
from voicelib.evaluation.fusion import build, compare  # noqa: E402
from voicelib.files import write_json  # noqa: E402
from voicelib.model import store  # noqa: E402
from voicelib.model.config import ModelConfig  # noqa: E402
from voicelib.training.config import TrainConfig  # noqa: E402
from voicelib.training.fit import fit  # noqa: E402

SHARED = Path(os.environ.get("VOICELIB_SHARED_SPEECH", REPO.parent / "shared" / "speech"))
OUT = REPO / "bench" / "out" / "fusion"
log = logging.getLogger("bench_fusion")


def corpus(language: str, *, seed: int, by_engine: bool) -> pd.DataFrame:
    """The language's clips of the shared corpus as a split manifest (family := engine with `by_engine`)."""
    raw = pd.read_csv(SHARED / "manifest.csv")
    raw = raw[raw["language"] == language].assign(path=lambda d: [str(SHARED / p) for p in d["path"]],
                                                  duration=lambda d: d["duration_s"])
    if by_engine:  # the corpus's AI engines share one family (neural): attribute engines instead
        raw = raw.assign(family=raw["engine"].where(raw["label"] == "ai", ""))
    return splits.assign_splits(manifest.to_frame(raw), seed=seed, val_fraction=0.2, test_fraction=0.25)


def train_versions(split: pd.DataFrame, *, language: str, epochs: int, segments: int) -> list[Path]:
    """Two small networks (seed 0 with the family head, seed 1 without), registered in a scratch store."""
    root = OUT / "models"
    for seed in (0, 1):
        cfg = TrainConfig(epochs=epochs, segments_per_epoch=segments, batch_size=32, seed=seed, patience=epochs)
        model_config = ModelConfig(width=16, family_head=seed == 0)
        start = time.perf_counter()
        result = fit(split, cfg, out_dir=OUT / f"run{seed}", model_config=model_config,
                           augment_config=AugmentConfig.none(), device="cpu", cache_dir=OUT / "cache", progress=False)
        log.info("seed %d: val EER %.3f in %.0f s", seed, result.best_val_eer, time.perf_counter() - start)
        store.register(result.model_dir, root=root, language=language, promote=seed == 0)
    return [root / language / v for v in store.list_models(root, language)[-2:]]


def attribution(model_dir: Path, test: pd.DataFrame) -> dict:
    """The family head's predictions on the test AI clips, as evaluation reports them."""
    from voicelib.scoring.load import load_detector

    det = load_detector(model_dir, backend="torch")
    waves, ok = clips.load_waves(test, det.sample_rate)
    scored = clips.score_waves(det, waves, chunk_duration=3.0, overlap=0.5)
    frame = test[ok].reset_index(drop=True).assign(y=(test[ok]["label"] == "ai").to_numpy(dtype=int),
                                                   predicted_family=scored.get("predicted_family"))
    if "predicted_family" not in scored:
        return {"note": "no family head: fit turned it off because the training AI clips hold fewer than 2 "
                        "families (the shared corpus's speaker-disjoint splits keep each small engine in one split)"}
    return evaluate.attribution(frame, det.families)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--language", default="english")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--segments", type=int, default=1024, help="training segments per epoch")
    parser.add_argument("--n-boot", type=int, default=300)
    parser.add_argument("--family-column", choices=["family", "engine"], default="family",
                        help="what the family head attributes (the shared corpus has one family of AI engines)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    start = time.perf_counter()
    split = corpus(args.language, seed=0, by_engine=args.family_column == "engine")
    test = split[split["split"] == "test"].reset_index(drop=True)
    v0, v1 = train_versions(split, language=args.language, epochs=args.epochs, segments=args.segments)
    builds = {"network+lfcc_gmm (lr)": ([v0], True, "lr"),
              "ensemble of 2 versions (mean)": ([v0, v1], False, "mean"),
              "ensemble of 2 versions (lr)": ([v0, v1], False, "lr"),
              "2 versions+lfcc_gmm (lr)": ([v0, v1], True, "lr")}
    engines = set(split.loc[(split["split"] == "train") & (split["label"] == "ai"), "engine"])
    seen = test["engine"].isin(engines) | (test["label"] == "human")
    unseen = ~test["engine"].isin(engines) | (test["label"] == "human")
    n_human = int((test["label"] == "human").sum())
    both = seen.sum() > n_human and unseen.sum() > n_human  # AI clips of seen and of unseen engines in test
    subsets = {"test": test, **({"test_seen_engines": test[seen], "test_unseen_engines": test[unseen]} if both else {})}
    results = {}
    for name, (dirs, gmm, combine) in builds.items():
        t0 = time.perf_counter()
        det = build(dirs, split, OUT / "fused" / name.split(" (")[0].replace(" ", "_").replace("+", "_")
                           / combine, gmm=gmm, combine=combine, gmm_components=16)
        results[name] = {"members": det.members, "weights": det.weights, "bias": det.bias,
                         "validation": det.meta.get("validation"),
                         **{part: compare(det, clips, n_boot=args.n_boot) for part, clips in subsets.items()},
                         "seconds": round(time.perf_counter() - t0)}
        log.info("%s: test EER %s", name, {k: round(v["eer"], 3) for k, v in results[name]["test"].items()
                                          if isinstance(v, dict)})
    counts = split.groupby(["split", "label"]).size().unstack(fill_value=0).to_dict(orient="index")
    report = {"machine": machine(), "language": args.language, "budget": vars(args), "splits": counts,
              "train_ai_engines": sorted(engines),
              "test_ai_engines": test[test["label"] == "ai"]["engine"].value_counts().to_dict(),
              "test_families": sorted(set(manifest.family_of(test[test["label"] == "ai"]))),
              "fusions": results, "attribution": attribution(v0, test),
              "seconds": round(time.perf_counter() - start),
              "note": "tiny training budget, one torch thread; figures are for comparing members and fusions on the "
                      "same clips, not the detector's quality"}
    write_json(REPO / "bench" / "results" / "fusion.json", report)
    log.info("wrote bench/results/fusion.json in %d s", report["seconds"])


if __name__ == "__main__":
    main()
