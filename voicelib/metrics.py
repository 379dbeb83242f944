"""Score metrics shared by training (model selection) and evaluation: EER, ROC/DET points, Platt calibration."""
from __future__ import annotations

import numpy as np
from scipy.special import expit
from scipy.stats import norm


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
        p = expit(x @ w)
        grad = x.T @ (p - target)
        hess = x.T @ (x * (p * (1 - p))[:, None]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return float(w[0]), float(w[1])


def apply_platt(scores, a: float, b: float) -> np.ndarray:
    """Map raw scores to calibrated AI probabilities."""
    return expit(a * np.asarray(scores, dtype=np.float64) + b)
