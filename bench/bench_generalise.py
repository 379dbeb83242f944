"""Leave-one-family-out on real speech: which detector settings generalise to AI engine families never heard?

    .venv/bin/python bench/bench_generalise.py --languages hindi malayalam --variants baseline linear
    .venv/bin/python bench/bench_generalise.py --collect-only            # collect the AI speech, then stop

For each language with human clips in ../shared/speech: collect AI speech with every offline engine
(espeak-ng, neural, diphone, vocoded copies of the human clips; cached under bench/out/generalise/data),
split speaker/group/sentence-disjoint, then for each AI family F and each variant: train on the train and
validation splits *without* F's clips (same budget and seed for every variant), and score all of F's clips
against the test humans. LFCC-GMM is fitted and scored on the same folds. The judge is the
leave-one-family-out EER averaged over families and languages. Writes bench/results/generalise.json and
bench/results/generalise.md (with the machine named).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from machine import machine  # noqa: E402  (bench/machine.py, beside this script)

from voicelib.audio.augment import AugmentConfig  # noqa: E402
from voicelib.data import manifest, splits  # noqa: E402
from voicelib.data.collect import CollectConfig, collect_all  # noqa: E402
from voicelib.evaluation import lofo  # noqa: E402
from voicelib.files import write_json  # noqa: E402
from voicelib.model.config import ModelConfig  # noqa: E402
from voicelib.training.config import TrainConfig  # noqa: E402

SHARED = Path(os.environ.get("VOICELIB_SHARED_SPEECH", REPO.parent / "shared" / "speech"))
OUT = REPO / "bench" / "out" / "generalise"
RESULTS = REPO / "bench" / "results"
LANGUAGES = ("hindi", "malayalam", "telugu", "english")
log = logging.getLogger("bench_generalise")

# each variant changes one thing against the baseline (the first version's defaults); same budget and seed for all
VARIANTS: dict[str, dict] = {
    "baseline": {},
    "preprocess": {"architecture": {"preprocess": {}}},  # VAD trim, loudness -23 dBFS, dither (PreprocessConfig())
    "preprocess_energy": {"architecture": {"preprocess": {"vad_backend": "energy"}}},  # the fast VAD (no Silero)
    "preprocess_linear": {"architecture": {"preprocess": {}, "features": {"kind": "linear"}}},
    "linear": {"architecture": {"features": {"kind": "linear"}}},
    "multires": {"architecture": {"features": {"kind": "multires"}}},
    "no_cmvn": {"architecture": {"features": {"cmvn": False}}},
    "channel_aug": {"augmentation": "channel_robust"},
    "no_augment": {"augmentation": "none"},
    "ocsoftmax": {"architecture": {"ai_head": "ocsoftmax"}},
    "asam": {"training": {"sam": "asam", "sam_rho": 0.5}},
    "lcnn": {"architecture": {"arch": "lcnn"}},
    "lfcc": {"architecture": {"features": {"kind": "lfcc"}}},
    "lcnn_lfcc": {"architecture": {"arch": "lcnn", "features": {"kind": "lfcc"}}},  # the ASVspoof LFCC-LCNN recipe
}
# one change against today's default, preprocess_energy (energy-VAD trim, loudness, dither in every path)
DEFAULT = "preprocess_energy"
ENERGY = VARIANTS[DEFAULT]["architecture"]
VARIANTS |= {
    "energy_linear": {"architecture": {**ENERGY, "features": {"kind": "linear"}}},
    # the linear bins pooled onto 80 equal-width bands: the network's cost of 80 mel bands (detection speed)
    "energy_linear80": {"architecture": {**ENERGY, "features": {"kind": "linear", "n_linear_bins": 80}}},
    "energy_lfcc": {"architecture": {**ENERGY, "features": {"kind": "lfcc"}}},
    "energy_multires": {"architecture": {**ENERGY, "features": {"kind": "multires"}}},
    "energy_ocsoftmax": {"architecture": {**ENERGY, "ai_head": "ocsoftmax"}},
    "energy_asam": {"architecture": ENERGY, "training": {"sam": "asam", "sam_rho": 0.5}},
    "energy_lcnn_lfcc": {"architecture": {**ENERGY, "arch": "lcnn", "features": {"kind": "lfcc"}}},
    "energy_channel_aug": {"architecture": ENERGY, "augmentation": "channel_robust"},
    "energy_no_cmvn": {"architecture": {**ENERGY, "features": {"cmvn": False}}},
    "energy_epochs6": {"architecture": ENERGY, "training": {"epochs": 6, "patience": 6}},  # 3x the budget
}


def collect(language: str, *, limit: int, seed: int, workers: int) -> pd.DataFrame:
    """Human clips of the shared corpus and AI speech of every offline engine (cached between runs)."""
    config = CollectConfig(human_sources=[], local_dirs=[SHARED], tts_engines="auto", limit=limit, seed=seed,
                                   workers=workers)
    return collect_all(OUT / "data" / language, config, language=language)


def folds(df: pd.DataFrame, *, seed: int) -> tuple[pd.DataFrame, list[str]]:
    """The speaker/group/sentence-disjoint split and the AI families that can be held out."""
    split = splits.assign_splits(df, seed=seed, val_fraction=0.15, test_fraction=0.25)
    return split, lofo.held_out_families(split)


def configs(variant: dict, *, budget: dict, seed: int) -> tuple[TrainConfig, ModelConfig, AugmentConfig]:
    """The variant's training, model and augmentation configs on the common budget."""
    aug = variant.get("augmentation", {})
    presets = {"none": AugmentConfig.none, "channel_robust": AugmentConfig.channel_robust}
    augment_config = presets[aug]() if isinstance(aug, str) else AugmentConfig.from_dict(aug)
    train_config = TrainConfig.from_dict({**budget, **variant.get("training", {})}, seed=seed)
    model_config = ModelConfig.from_dict({"width": 16, "segment_seconds": 3.0, **variant.get("architecture", {})})
    return train_config, model_config, augment_config


def reference_of(name: str) -> str:
    """The variant `name` changes one thing against: today's default for the energy_* variants, else the baseline."""
    return DEFAULT if name.startswith("energy_") else "baseline"


def paired(report: dict, name: str, *, n_boot: int = 5000, seed: int = 0) -> str:
    """Mean EER change against the variant's reference over the folds both ran, its 95 % interval, better/worse."""
    reference = reference_of(name)
    base = {(lang, r["family"]): r["eer"] for lang, rows in report["variants"].get(reference, {}).items()
            for r in rows}
    ours = {(lang, r["family"]): r["eer"] for lang, rows in report["variants"][name].items() for r in rows}
    diff = np.array([ours[k] - base[k] for k in ours if k in base])
    if name == reference or not len(diff):
        return "– | – | –"
    rng = np.random.default_rng(seed)
    low, high = np.percentile([rng.choice(diff, len(diff)).mean() for _ in range(n_boot)], [2.5, 97.5])
    return (f"{reference} | {100 * diff.mean():+.1f} [{100 * low:+.1f}, {100 * high:+.1f}] over {len(diff)} folds | "
            f"{int((diff < 0).sum())} / {int((diff > 0).sum())}")


def table(report: dict) -> str:
    """Markdown: mean leave-one-family-out EER per variant and language, the paired change against the
    variant's reference, and LFCC-GMM and the fusion (network + LFCC-GMM) on the folds of the variants that
    fitted them."""
    languages = report["languages"]
    lines = ["| variant | " + " | ".join(languages) + " | mean | against | change (EER points, 95%) | better / worse |",
             "|---|" + "---|" * (len(languages) + 4)]
    rows_of = report["variants"]
    with_gmm = [n for n in rows_of if any(r.get("lfcc_gmm_eer") is not None for rows in rows_of[n].values()
                                          for r in rows)]
    extra = [(f"LFCC-GMM, {n}'s folds", "lfcc_gmm_eer", n) for n in with_gmm]
    extra += [(f"{n} + LFCC-GMM fused (LR)", "fused_eer", n) for n in with_gmm]
    for label, key, name in [(n, "eer", n) for n in rows_of] + extra:
        per_language = rows_of.get(name, {})
        cells, means = [], []
        for language in languages:
            rows = per_language.get(language, [])
            ok = rows and all(r.get(key) is not None for r in rows)
            cells.append(f"{100 * np.mean([r[key] for r in rows]):.1f}" if ok else "–")
            if ok:
                means.append(np.mean([r[key] for r in rows]))
        mean = f"{100 * np.mean(means):.1f}" if len(means) == len(languages) else "–"  # only over every language
        comparison = paired(report, name) if key == "eer" else "– | – | –"
        if means or key == "eer":
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {mean} | {comparison} |")
    return "\n".join(lines)


def write_table(report: dict, name: str = "generalise") -> None:
    """bench/results/<name>.md from the report."""
    (RESULTS / f"{name}.md").write_text(f"# Leave one family out\n\nMachine: {report['machine']['cpu']}, "
                                           f"budget {report['budget']}, seed {report['seed']}, limit "
                                           f"{report['limit']}\n\n{table(report)}\n", encoding="utf-8")


def main() -> None:
    """Collect, run every (language, family, variant) fold, write the results."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--languages", nargs="+", default=list(LANGUAGES))
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--limit", type=int, default=120, help="human clips per source (and AI clips per engine)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--segments", type=int, default=1200, help="training segments per epoch (the budget)")
    p.add_argument("--seed", type=int, default=0, help="seed of the splits and of every training")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the collection (a new one collects anew)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--gmm-variants", nargs="*", default=["baseline", "preprocess_energy"],
                   help="variants whose folds also fit LFCC-GMM and the network + LFCC-GMM fusion")
    p.add_argument("--collect-only", action="store_true")
    p.add_argument("--table-only", action="store_true", help="rewrite generalise.md from generalise.json and stop")
    p.add_argument("--tag", default="", help="write generalise_<tag>.json/.md (e.g. a second seed) instead")
    args = p.parse_args()
    name = f"generalise_{args.tag}" if args.tag else "generalise"
    if args.table_only:
        write_table(json.loads((RESULTS / f"{name}.json").read_text(encoding="utf-8")), name)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    budget = {"epochs": args.epochs, "patience": args.epochs, "segments_per_epoch": args.segments, "batch_size": 32,
              "lr": 2e-3}
    report = {"benchmark": "leave_one_family_out", "machine": machine(), "budget": budget, "seed": args.seed,
              "limit": args.limit, "languages": args.languages, "variants": {v: {} for v in args.variants},
              "variant_settings": {v: VARIANTS[v] for v in args.variants}, "collection": {}}
    earlier = RESULTS / f"{name}.json"
    if earlier.is_file():  # keep the variants an earlier run measured on the same budget, seed and data
        old = json.loads(earlier.read_text(encoding="utf-8"))
        if (old.get("budget"), old.get("seed"), old.get("limit")) == (budget, args.seed, args.limit):
            for done, per_language in old["variants"].items():  # (variant, language) pairs this run does not redo
                kept = report["variants"].setdefault(done, {})
                for language, rows in per_language.items():
                    if done not in args.variants or language not in args.languages:
                        kept.setdefault(language, rows)
                report["variant_settings"].setdefault(done, old["variant_settings"].get(done))
            report["collection"] = {k: v for k, v in old.get("collection", {}).items() if k not in args.languages}
            report["languages"] = [*args.languages, *(x for x in old.get("languages", []) if x not in args.languages)]
            report["earlier_machine"] = old.get("machine")
    for language in args.languages:
        df = collect(language, limit=args.limit, seed=args.data_seed, workers=args.workers)
        report["collection"][language] = manifest.summary(df, by=["label", "family"]).to_dict(orient="records")
        if args.collect_only:
            continue
        split, families = folds(df, seed=args.seed)
        for variant in args.variants:
            train_config, model_config, augment_config = configs(VARIANTS[variant], budget=budget, seed=args.seed)
            rows = []
            for family in families:
                row, scores, val_scores = lofo.one_fold(
                    split, family, train_config=train_config, model_config=model_config, augment_config=augment_config,
                    out_dir=OUT / variant / language / family, cache_dir=OUT / "cache", seed=args.seed,
                    gmm_components=16 if variant in args.gmm_variants else 0)
                rows.append(row)
                # per-clip scores: fusion rules are compared on them offline (bench/bench_fusion_rules.py)
                kept = OUT / "scores" / (variant + (f"_{args.tag}" if args.tag else "")) / language
                kept.mkdir(parents=True, exist_ok=True)
                scores.to_csv(kept / f"{family}_test.csv", index=False)
                val_scores.to_csv(kept / f"{family}_val.csv", index=False)
            report["variants"][variant][language] = rows
            write_json(RESULTS / f"{name}.json", report)  # after every fold set: a long run keeps its results
    if args.collect_only:
        return
    write_table(report, name)
    print(json.dumps({k: v for k, v in report.items() if k != "collection"}, indent=1)[:3000])


if __name__ == "__main__":
    main()
