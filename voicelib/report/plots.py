"""Every figure of the project: functions that take data frames (or metrics dicts) and return matplotlib figures.

Stages write data (manifest.csv, history.csv, scores.csv, metrics.json); the notebooks and the report
draw from it with these functions, so a figure never depends on a stage having drawn it.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from voicelib import metrics as m
from voicelib.audio.features import log_mel
from voicelib.data.manifest import family_of
from voicelib.evaluation.baselines import NAMES

FIGSIZES = {"confusion_matrix": (4.2, 3.8), "roc": (5, 4.5), "det": (5, 4.5), "score_histogram": (5.5, 3.8),
            "reliability": (4.5, 4.5), "robustness": (6, 3.8)}


def _plt():
    import matplotlib.pyplot as plt  # heavy: imported on first use (import voicelib stays light)

    return plt


def spectrogram(wave: np.ndarray, features: Any, *, title: str = "") -> Any:
    """The model's own front end (a FeatureConfig) of a clip, as an image."""

    plt = _plt()
    spec = log_mel(np.asarray(wave, dtype=np.float32), features)
    spec = np.maximum(spec, spec.max() - 8.0 * np.log(10.0))  # show 80 dB below the peak
    fig, ax = plt.subplots(figsize=(4.2, 1.9))
    ax.imshow(spec, origin="lower", aspect="auto", cmap="magma",
              extent=(0, len(wave) / features.sample_rate, 0, spec.shape[0]))
    ax.set(xlabel="s", ylabel=f"band ({features.n_mels} mel, {features.fmin:g}-{features.fmax:g} Hz)")
    ax.set_title(title, fontsize=9)
    return fig


def durations(df: pd.DataFrame) -> Any:
    """Histogram of clip durations per class."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 2.8))
    bins = np.linspace(0, max(float(df["duration"].max()), 1.0), 30)
    for label, group in df.groupby("label"):
        ax.hist(group["duration"], bins=bins, alpha=0.6, label=f"{label} ({len(group)})")
    ax.set(xlabel="duration (s)", ylabel="clips", title="Clip durations by class")
    ax.legend()
    return fig


def training_curves(history: pd.DataFrame) -> Any:
    """Loss per epoch (left) and validation EER / ROC-AUC per epoch (right)."""
    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3))
    x = history["epoch"] if "epoch" in history else np.arange(1, len(history) + 1)
    for col in [c for c in history.columns if "loss" in c]:
        left.plot(x, history[col], marker="o", label=col)
    left.set_title("loss")
    for col in [c for c in history.columns if c.startswith("val") and ("eer" in c or "auc" in c)]:
        right.plot(x, history[col], marker="o", label=col)
    right.set_title("validation")
    for ax in (left, right):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def labels_of(scores: pd.DataFrame) -> np.ndarray:
    """0/1 labels (1 = AI) of a scores table's `label` column."""
    return (scores["label"].astype(str).str.lower() == "ai").to_numpy(dtype=int)


def confusion(result: dict) -> Any:
    """The test confusion matrix at the shipped threshold."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=FIGSIZES["confusion_matrix"])
    c = result["confusion"]
    grid = np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]])
    ax.imshow(grid, cmap="Blues", vmin=0)
    for (i, j), v in np.ndenumerate(grid):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=14, color="white" if v > grid.max() / 2 else "black")
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["human", "AI"], yticklabels=["human", "AI"],
           xlabel="predicted", ylabel="true", title=f"Test confusion (threshold {result['threshold']:.2f})")
    return fig


def roc_and_det(scores: pd.DataFrame, columns: dict[str, str]) -> tuple[Any, Any]:
    """ROC and DET curves of each named score column (higher = more AI) on the same clips."""
    from scipy.stats import norm

    plt = _plt()
    y = labels_of(scores)
    (fig_roc, ax_roc), (fig_det, ax_det) = plt.subplots(figsize=FIGSIZES["roc"]), plt.subplots(figsize=FIGSIZES["det"])
    for name, column in columns.items():
        s = scores[column].to_numpy(dtype=float)
        fpr, tpr, _ = m.roc_points(y, s)
        ax_roc.plot(fpr, tpr, label=f"{name} (AUC {m.roc_auc(y, s):.3f})")
        ax_det.plot(*m.det_points(y, s), label=f"{name} (EER {m.eer(y, s)[0]:.1%})")
    ax_roc.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax_roc.set(xlabel="false-positive rate (human called AI)", ylabel="true-positive rate (AI caught)",
               title="ROC, test split")
    ticks = np.array([0.001, 0.01, 0.05, 0.2, 0.5, 0.8, 0.95])
    names = [f"{t:.1%}" if t < 0.01 else f"{t:.0%}" for t in ticks]
    ax_det.set(xticks=norm.ppf(ticks), yticks=norm.ppf(ticks), xticklabels=names, yticklabels=names,
               xlim=(norm.ppf(5e-4), norm.ppf(0.99)), ylim=(norm.ppf(5e-4), norm.ppf(0.99)),
               xlabel="false-positive rate", ylabel="miss rate (AI called human)", title="DET, test split")
    for ax in (ax_roc, ax_det):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return fig_roc, fig_det


def score_histogram(scores: pd.DataFrame, result: dict) -> Any:
    """Calibrated AI probability per class, with the threshold and the inconclusive band."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=FIGSIZES["score_histogram"])
    bins = np.linspace(0, 1, 41)
    y = labels_of(scores)
    for label, name in ((0, "human"), (1, "AI")):
        ax.hist(scores["ai_score"][y == label], bins=bins, alpha=0.6, label=f"{name} (n={int((y == label).sum())})")
    inc = result["inconclusive"]
    ax.axvspan(inc["low"], inc["high"], color="grey", alpha=0.2, label="inconclusive band")
    ax.axvline(result["threshold"], color="k", ls="--", label="threshold (from validation)")
    ax.set(xlabel="calibrated AI probability", ylabel="test clips", title="Score histogram per class")
    ax.legend(fontsize=8)
    return fig


def reliability(scores: pd.DataFrame, result: dict, val_scores: pd.DataFrame | None = None) -> Any:
    """Observed AI share against the calibrated probability, on validation and test."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=FIGSIZES["reliability"])
    a, b = result["calibration"]["a"], result["calibration"]["b"]
    for name, part in (("validation", val_scores), ("test", scores)):
        if part is not None and len(part):
            px, py, n = m.reliability_points(labels_of(part), m.apply_platt(part["ai_logit"].to_numpy(), a, b))
            ax.plot(px, py, "o-", label=f"{name} (n={int(n.sum())})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="predicted AI probability (Platt)", ylabel="observed AI share", title="Reliability (10 bins)")
    ax.legend(fontsize=8)
    return fig


def robustness(result: dict) -> Any:
    """Test EER clean and under each re-encoding."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=FIGSIZES["robustness"])
    names = ["clean"] + list(result["robustness"])
    values = [result["eer"]] + [v["eer"] for v in result["robustness"].values()]
    ax.bar(names, values, color=["tab:blue"] + ["tab:orange"] * (len(names) - 1))
    for i, v in enumerate(values):
        ax.text(i, v, f"{v:.1%}", ha="center", va="bottom", fontsize=8)
    ax.set(ylabel="EER (lower is better)", title="Robustness: test EER per re-encoding")
    ax.tick_params(axis="x", rotation=30)
    return fig


def family_confusion(scores: pd.DataFrame) -> Any:
    """Attribution: true generator family of the test AI clips against the family head's prediction (row shares)."""

    plt = _plt()
    ai = scores[labels_of(scores) == 1]
    table = pd.crosstab(family_of(ai), ai["predicted_family"].fillna("-"))
    shares = table.to_numpy(dtype=float) / np.maximum(table.to_numpy().sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.2 + 0.7 * table.shape[1], 1.0 + 0.5 * table.shape[0]))
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (i, j), v in np.ndenumerate(table.to_numpy()):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=9, color="white" if shares[i, j] > 0.5 else "black")
    ax.set(xticks=range(table.shape[1]), yticks=range(table.shape[0]), xticklabels=table.columns,
           yticklabels=table.index, xlabel="predicted family", ylabel="true family",
           title="Attribution, test AI clips")
    ax.tick_params(axis="x", rotation=45)
    return fig


def evaluation_figures(scores: pd.DataFrame, result: dict, val_scores: pd.DataFrame | None = None) -> dict[str, Any]:
    """Every evaluation figure, by name, from scores.csv (and val_scores.csv) and metrics.json."""
    columns = {"model": "ai_logit", **{k: k for k in NAMES if k in scores}}
    roc, det = roc_and_det(scores, columns)
    figures = {"confusion_matrix": confusion(result), "roc": roc, "det": det,
               "score_histogram": score_histogram(scores, result),
               "reliability": reliability(scores, result, val_scores)}
    if result.get("robustness"):
        figures["robustness"] = robustness(result)
    if "predicted_family" in scores and scores["predicted_family"].notna().any() and labels_of(scores).any():
        figures["family_confusion"] = family_confusion(scores)
    for fig in figures.values():
        fig.tight_layout()
    return figures
