"""Score metrics shared by training (model selection) and evaluation: EER, ROC/DET points, Platt calibration."""
from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)


def sigmoid(x) -> np.ndarray:
    """The logistic function without overflow warnings (scipy.special.expit costs the scoring path 0.2 s to import)."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))[()]  # [()]: a scalar for a scalar, as expit


def _check(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels).astype(int).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"labels ({labels.size}) and scores ({scores.size}) differ in length")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or inf; check the model outputs")
    if set(np.unique(labels)) - {0, 1}:
        raise ValueError("labels must be 0 (human) or 1 (AI)")
    if labels.min(initial=1) == labels.max(initial=0):
        raise ValueError("EER needs both classes (human and AI) among the labels")
    return labels, scores


def roc_points(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (false-positive rate, true-positive rate, thresholds) over every distinct score, AI = positive."""
    labels, scores = _check(labels, scores)
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    distinct = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]
    tp = np.cumsum(y)[distinct]
    fp = np.cumsum(1 - y)[distinct]
    tpr = np.r_[0.0, tp / y.sum()]
    fpr = np.r_[0.0, fp / (y.size - y.sum())]
    thresholds = np.r_[np.inf, s[distinct]]
    return fpr, tpr, thresholds


def eer(labels, scores) -> tuple[float, float]:
    """Return (equal error rate, threshold at which it is reached); scores >= threshold mean AI."""
    fpr, tpr, thresholds = roc_points(labels, scores)
    fnr = 1.0 - tpr
    i = int(np.argmin(np.abs(fnr - fpr)))
    # interpolate between the two points that bracket the crossing for a less jumpy estimate
    j = i + 1 if i + 1 < fpr.size and (fnr[i] - fpr[i]) > 0 else max(i - 1, 0)
    d_i, d_j = fnr[i] - fpr[i], fnr[j] - fpr[j]
    if j != i and d_i * d_j < 0:
        w = d_i / (d_i - d_j)
        rate = (fpr[i] + w * (fpr[j] - fpr[i]) + fnr[i] + w * (fnr[j] - fnr[i])) / 2
    else:
        rate = (fpr[i] + fnr[i]) / 2
    threshold = float(thresholds[i]) if np.isfinite(thresholds[i]) else float(thresholds[1])
    return float(rate), threshold


def det_points(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    """Return DET curve coordinates (probit of false-positive rate, probit of miss rate)."""
    fpr, tpr, _ = roc_points(labels, scores)
    eps = 1e-4
    from scipy.stats import norm  # heavy (0.5 s): only the DET plot needs it, never the scoring path

    return norm.ppf(np.clip(fpr, eps, 1 - eps)), norm.ppf(np.clip(1 - tpr, eps, 1 - eps))


def fit_platt(labels, scores, *, iterations: int = 200) -> tuple[float, float]:
    """Fit p(AI) = sigmoid(a * score + b) by Newton's method on the log-loss; return (a, b)."""
    labels, scores = _check(labels, scores)
    # Platt's smoothed targets keep the fit finite when the classes separate perfectly
    n_pos, n_neg = labels.sum(), labels.size - labels.sum()
    target = np.where(labels == 1, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    x = np.c_[scores, np.ones_like(scores)]
    w = np.zeros(2)
    for _ in range(iterations):
        p = sigmoid(x @ w)
        grad = x.T @ (p - target)
        hess = x.T @ (x * (p * (1 - p))[:, None]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return float(w[0]), float(w[1])


def apply_platt(scores, a: float, b: float) -> np.ndarray:
    """Map raw scores to calibrated AI probabilities."""
    return sigmoid(a * np.asarray(scores, dtype=np.float64) + b)


def roc_auc(labels, scores) -> float:
    """Return the area under the ROC curve (probability that an AI clip outscores a human one, ties half)."""
    labels, scores = _check(labels, scores)
    from scipy.stats import rankdata  # heavy (0.5 s): only evaluation ranks, never the scoring path

    ranks = rankdata(scores)
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    return float((ranks[labels == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def binary_metrics(labels, scores, threshold: float) -> dict:
    """Return accuracy, precision, recall, F1, FPR, FNR and the confusion counts at `threshold` (>= means AI)."""
    labels = np.asarray(labels).astype(int).ravel()
    pred = (np.asarray(scores, dtype=np.float64).ravel() >= threshold).astype(int)
    tp = int(((pred == 1) & (labels == 1)).sum())
    fp = int(((pred == 1) & (labels == 0)).sum())
    fn = int(((pred == 0) & (labels == 1)).sum())
    tn = int(((pred == 0) & (labels == 0)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "accuracy": (tp + tn) / max(labels.size, 1),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "fpr": fp / (fp + tn) if fp + tn else 0.0,
        "fnr": fn / (fn + tp) if fn + tp else 0.0,
        "confusion": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
    }


def compute_metrics(labels, scores, *, threshold: float) -> dict:
    """Return EER (with its own threshold), ROC-AUC and the decision metrics at the given operating threshold."""
    rate, eer_threshold = eer(labels, scores)
    out = {"eer": rate, "eer_threshold": eer_threshold, "roc_auc": roc_auc(labels, scores),
           "threshold": float(threshold)}
    out.update(binary_metrics(labels, scores, threshold))
    out["n"] = int(np.asarray(labels).size)
    return out


def bootstrap_ci(labels, scores, *, threshold: float, seed: int, n_boot: int = 1000,
                 clusters=None, level: float = 0.95) -> dict[str, list[float]]:
    """Percentile bootstrap intervals for EER, ROC-AUC and accuracy, resampling within each class.

    With `clusters` (e.g. speaker ids) whole clusters are resampled within each class, which keeps
    the many clips of one speaker together; otherwise single clips are resampled.
    """
    labels, scores = _check(labels, scores)
    rng = np.random.default_rng(seed)
    clusters = np.arange(labels.size) if clusters is None else np.asarray(clusters)
    members = {c: [np.flatnonzero((labels == c) & (clusters == k)) for k in np.unique(clusters[labels == c])]
               for c in (0, 1)}
    draws: dict[str, list[float]] = {"eer": [], "roc_auc": [], "accuracy": []}
    for _ in range(n_boot):
        idx = np.concatenate([np.concatenate([groups[i] for i in rng.integers(0, len(groups), len(groups))])
                              for groups in members.values()])
        y, s = labels[idx], scores[idx]
        draws["eer"].append(eer(y, s)[0])
        draws["roc_auc"].append(roc_auc(y, s))
        draws["accuracy"].append(float(((s >= threshold).astype(int) == y).mean()))
    tail = (1 - level) / 2 * 100
    return {k: [float(np.percentile(v, tail)), float(np.percentile(v, 100 - tail))] for k, v in draws.items()}


def expected_calibration_error(labels, probs, *, n_bins: int = 10) -> float:
    """Return the expected calibration error of AI probabilities over equal-width bins."""
    labels = np.asarray(labels, dtype=np.float64).ravel()
    probs = np.asarray(probs, dtype=np.float64).ravel()
    bins = np.minimum((probs * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in np.unique(bins):
        sel = bins == b
        total += sel.sum() * abs(probs[sel].mean() - labels[sel].mean())
    return float(total / max(labels.size, 1))


def reliability_points(labels, probs, *, n_bins: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (mean predicted probability, observed AI share, count) per non-empty bin."""
    labels = np.asarray(labels, dtype=np.float64).ravel()
    probs = np.asarray(probs, dtype=np.float64).ravel()
    bins = np.minimum((probs * n_bins).astype(int), n_bins - 1)
    keep = np.unique(bins)
    return (np.array([probs[bins == b].mean() for b in keep]), np.array([labels[bins == b].mean() for b in keep]),
            np.array([(bins == b).sum() for b in keep]))


def inconclusive_band(labels, probs, threshold: float, *, accuracy: float = 0.95, low: float = 0.02,
                      high: float = 0.25) -> float:
    """The smallest half-width around `threshold` outside which the decisions on these clips reach `accuracy`.

    Sized on validation: clips closer to the threshold than this are INCONCLUSIVE in detection.
    """
    labels, probs = np.asarray(labels).astype(int), np.asarray(probs, dtype=float)
    for band in np.round(np.arange(low, high + 1e-9, 0.01), 2):
        decided = np.abs(probs - threshold) >= band
        if decided.any() and float(((probs[decided] >= threshold).astype(int) == labels[decided]).mean()) >= accuracy:
            return float(band)
    return float(high)


MIN_CALIBRATION_CLIPS = 10  # per class: fewer held-out clips than this give no Platt calibration


def calibrate(labels, scores, threshold: float, *, source: str,
              warn: bool = True) -> tuple[tuple[float, float], float, str | None]:
    """Platt calibration and inconclusive band from held-out clip scores: ((a, b), band, why refused or None).

    Fewer than MIN_CALIBRATION_CLIPS of a class give no calibration (a=1, b=0) and say so.
    """
    labels = np.asarray(labels).astype(int)
    n_ai, n_human = int(labels.sum()), int((labels == 0).sum())
    refused = None
    if min(n_ai, n_human) < MIN_CALIBRATION_CLIPS:
        refused = (f"not calibrated: {source} has {n_ai} AI and {n_human} human clips (< {MIN_CALIBRATION_CLIPS} "
                   "of a class); scores are the raw sigmoid, and the threshold rests on few clips")
        if warn:
            log.warning(refused)
    a, b = fit_platt(labels, scores) if refused is None else (1.0, 0.0)
    band = inconclusive_band(labels, apply_platt(scores, a, b), float(apply_platt(threshold, a, b)))
    return (float(a), float(b)), band, refused
