"""Which way of combining the network and the LFCC-GMM holds on generator families never heard?

    .venv/bin/python bench/bench_fusion_rules.py [--variant preprocess_energy]

Reads the per-clip scores bench_generalise.py keeps for each leave-one-family-out fold
(bench/out/generalise/scores/<variant>/<language>/<family>_{val,test}.csv: the fold's validation clips and
its held-out family against the test humans) and compares score combinations on the same clips.

The bench's validation splits hold 3-13 human clips, too few to fit a fusion on, so every rule is
cross-fitted over the test humans: their speakers are dealt into two halves; a rule is fitted on the
fold's validation clips plus one half's humans and scores the other half's humans and every held-out AI
clip (an AI clip's score is the mean of its two cross-fitted scores). No clip informs its own score, and
the held-out family never informs any rule. Rules:

- network, lfcc_gmm, gmm_novelty: one member alone (gmm_novelty: unlikeness to the human GMM);
- lr: logistic regression (what voicelib.scoring.fusion fits);
- zmean / zmax: each member standardised by the fitting humans' scores (mean and spread), then their
  mean or their maximum; nothing is fitted to the AI families the fitting set happens to hold.

Per rule: EER per fold, its mean over families and languages, the paired change against the network alone
(95 % bootstrap over folds), and at the rule's EER threshold on the fitting set the share of held-out AI
clips called AI and of the scored humans called AI. Writes bench/results/fusion_rules.json and .md.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from machine import machine  # noqa: E402

from voicelib import metrics  # noqa: E402
from voicelib.evaluation.fusion import fit_lr  # noqa: E402
from voicelib.files import write_json  # noqa: E402

SCORES = REPO / "bench" / "out" / "generalise" / "scores"
RESULTS = REPO / "bench" / "results"
PAIRS = {"net+gmm": ["logit", "lfcc_gmm"], "net+novelty": ["logit", "gmm_novelty"],
         "net+gmm+novelty": ["logit", "lfcc_gmm", "gmm_novelty"]}


def standardise(fit: pd.DataFrame, score: pd.DataFrame, columns: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Both tables' columns scaled by the fitting humans' mean and standard deviation."""
    human = fit.loc[fit["y"] == 0, columns]
    mu, sd = human.mean().to_numpy(), human.std().to_numpy() + 1e-9
    return (fit[columns].to_numpy() - mu) / sd, (score[columns].to_numpy() - mu) / sd


def rules(fit: pd.DataFrame, score: pd.DataFrame, *, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(scores of the fitting clips, scores of the scored clips) of every rule, fitted on `fit` only."""
    out = {"network": (fit["logit"].to_numpy(), score["logit"].to_numpy())}
    for column in ("lfcc_gmm", "gmm_novelty"):
        out[column] = (fit[column].to_numpy(), score[column].to_numpy())
    for pair, columns in PAIRS.items():
        weights, bias = fit_lr(fit.assign(split="val"), columns, seed=seed)
        out[f"lr {pair}"] = (fit[columns].to_numpy() @ weights + bias, score[columns].to_numpy() @ weights + bias)
        zf, zs = standardise(fit, score, columns)
        out[f"zmean {pair}"] = (zf.mean(axis=1), zs.mean(axis=1))
        out[f"zmax {pair}"] = (zf.max(axis=1), zs.max(axis=1))
    return out


def halves(test: pd.DataFrame, *, seed: int = 0) -> list[np.ndarray]:
    """Two boolean masks over the test humans: their speakers dealt alternately after a seeded shuffle."""
    human = test["y"] == 0
    speakers = np.random.default_rng(seed).permutation(sorted(test.loc[human, "speaker"].astype(str).unique()))
    first = set(speakers[::2])
    in_first = test["speaker"].astype(str).isin(first).to_numpy()
    return [human.to_numpy() & in_first, human.to_numpy() & ~in_first]


def one_fold(val: pd.DataFrame, test: pd.DataFrame, *, seed: int = 0) -> dict[str, dict]:
    """Cross-fitted EER of every rule on the fold's clips, and what its fitting-set EER threshold calls AI."""
    ai = (test["y"] == 1).to_numpy()
    humans: dict[str, list[np.ndarray]] = {}
    ai_scores: dict[str, list[np.ndarray]] = {}
    ai_called: dict[str, list[float]] = {}
    humans_called: dict[str, int] = {}
    for mask in halves(test, seed=seed):
        fit = pd.concat([val, test[(test["y"] == 0).to_numpy() & ~mask]], ignore_index=True)
        scored = test[mask | ai].reset_index(drop=True)
        is_ai = (scored["y"] == 1).to_numpy()
        for name, (sf, ss) in rules(fit, scored, seed=seed).items():
            threshold = metrics.eer(fit["y"].to_numpy(), sf)[1]
            humans.setdefault(name, []).append(ss[~is_ai])
            ai_scores.setdefault(name, []).append(ss[is_ai])
            ai_called.setdefault(name, []).append(float(np.mean(ss[is_ai] >= threshold)))
            humans_called[name] = humans_called.get(name, 0) + int(np.sum(ss[~is_ai] >= threshold))
    out = {}
    n_human = int((test["y"] == 0).sum())
    for name in humans:
        h, a = np.concatenate(humans[name]), np.mean(ai_scores[name], axis=0)
        y = np.r_[np.zeros(len(h)), np.ones(len(a))]
        out[name] = {"eer": float(metrics.eer(y, np.r_[h, a])[0]), "ai_called_ai": float(np.mean(ai_called[name])),
                     "human_called_ai": humans_called[name] / n_human}
    return out


def paired(folds: list[dict], name: str, *, n_boot: int = 5000, seed: int = 0) -> dict:
    """Mean EER change of `name` against the network alone over the folds, its 95 % bootstrap interval."""
    diff = np.array([f["rules"][name]["eer"] - f["rules"]["network"]["eer"] for f in folds])
    rng = np.random.default_rng(seed)
    boots = [rng.choice(diff, len(diff)).mean() for _ in range(n_boot)]
    return {"mean": float(diff.mean()), "ci": [float(v) for v in np.percentile(boots, [2.5, 97.5])],
            "better": int((diff < 0).sum()), "worse": int((diff > 0).sum()), "folds": len(diff)}


def table(report: dict) -> str:
    """Markdown: per rule the mean EER per language and overall, the paired change and the threshold shares."""
    languages = report["languages"]
    lines = ["| rule | " + " | ".join(languages) + " | mean | vs network (points, 95%) | better / worse "
             "| held-out AI called AI | humans called AI |", "|---|" + "---|" * (len(languages) + 5)]
    for name in report["rules"]:
        per = [np.mean([f["rules"][name]["eer"] for f in report["folds"] if f["language"] == lang])
               for lang in languages]
        p = report["paired"][name]
        share = {k: 100 * np.mean([f["rules"][name][k] for f in report["folds"]])
                 for k in ("ai_called_ai", "human_called_ai")}
        low, high = p["ci"]
        change = "–" if name == "network" else f"{100 * p['mean']:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"
        lines.append(f"| {name} | " + " | ".join(f"{100 * v:.1f}" for v in per) + f" | {100 * np.mean(per):.1f} | "
                     f"{change} | {p['better']} / {p['worse']} | {share['ai_called_ai']:.0f} % | "
                     f"{share['human_called_ai']:.0f} % |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", default="preprocess_energy")
    args = p.parse_args()
    root = SCORES / args.variant
    folds = []
    for lang_dir in sorted(d for d in root.iterdir() if d.is_dir()):
        for test_path in sorted(lang_dir.glob("*_test.csv")):
            family = test_path.name[: -len("_test.csv")]
            test, val = pd.read_csv(test_path), pd.read_csv(lang_dir / f"{family}_val.csv")
            folds.append({"language": lang_dir.name, "family": family, "n_ai": int(test["y"].sum()),
                          "n_human": int((test["y"] == 0).sum()), "rules": one_fold(val, test)})
    if not folds:
        raise SystemExit(f"no fold scores under {root}: run bench/bench_generalise.py --variants {args.variant} first")
    names = list(folds[0]["rules"])
    languages = list(dict.fromkeys(f["language"] for f in folds))
    report = {"benchmark": "fusion_rules", "machine": machine(), "variant": args.variant, "languages": languages,
              "rules": names, "folds": folds, "paired": {n: paired(folds, n) for n in names},
              "mean_eer": {n: float(np.mean([np.mean([f["rules"][n]["eer"] for f in folds if f["language"] == lang])
                                             for lang in languages])) for n in names}}
    write_json(RESULTS / "fusion_rules.json", report)
    md = (f"# Fusion rules on leave-one-family-out folds\n\nVariant {args.variant}; machine {report['machine']['cpu']};"
          f" {len(folds)} folds over {', '.join(languages)}. Each rule is cross-fitted over the test humans' speakers "
          "(fitted on the fold's validation clips and the other half's humans; the held-out family informs no "
          "rule); shares at the rule's EER threshold on its fitting set, averaged over folds.\n\n"
          + table(report) + "\n")
    (RESULTS / "fusion_rules.md").write_text(md, encoding="utf-8")
    print(md)


if __name__ == "__main__":
    main()
