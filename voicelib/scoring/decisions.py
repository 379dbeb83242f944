"""Decisions: the calibrated AI probability, the threshold and its inconclusive band, and the per-file result.

Clip score: the mean of the AI logits of the scored windows, mapped through the Platt calibration the model
carries; the decision compares that probability with the model's threshold, and probabilities within `band`
of the threshold are INCONCLUSIVE. Language distribution, multi-speaker score and family distribution are
null when the model's training left that head untrained (one training language; fine-tuning mode "head").
"""
from __future__ import annotations

import logging
import math

import numpy as np

from voicelib.errors import ModelError

log = logging.getLogger(__name__)

HUMAN, AI, INCONCLUSIVE = "HUMAN", "AI_GENERATED", "INCONCLUSIVE"
DEFAULT_BAND = 0.1  # probabilities within +-0.1 of the threshold probability are inconclusive


def mean_softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax of each window's logits [N, K], averaged over the windows."""
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).mean(axis=0)


def classify(prob: float, threshold: float, *, band: float = DEFAULT_BAND) -> tuple[str, float]:
    """Return (classification, confidence); confidence is the distance from the threshold scaled to [0, 1]."""
    if prob >= threshold:
        confidence = (prob - threshold) / max(1.0 - threshold, 1e-9)
    else:
        confidence = (threshold - prob) / max(threshold, 1e-9)
    if abs(prob - threshold) < band:
        return INCONCLUSIVE, float(confidence)
    return (AI if prob >= threshold else HUMAN), float(confidence)


def calibration_of(meta: dict) -> tuple[float, float]:
    """Read the Platt (a, b) from model metadata in any of the shapes store may write."""
    cal = meta.get("calibration")
    if cal is None:
        log.warning("model has no calibration; using the uncalibrated sigmoid of the logit")
        return 1.0, 0.0
    if isinstance(cal, dict):
        return float(cal["a"]), float(cal["b"])
    return float(cal[0]), float(cal[1])


def operating_point_of(meta: dict, where: object) -> tuple[float, float, float, str, float]:
    """The model's (a, b, threshold, threshold scale, band), every field checked; ModelError (one line) if damaged."""
    def number(value: object, name: str) -> float:
        try:
            value = float(value)
        except (TypeError, ValueError):
            value = float("nan")
        if not math.isfinite(value):
            raise ModelError(f"{where}: config.json has {name}={value!r}, not a finite number; restore the model "
                             "directory from the store or retrain it")
        return value

    cal = meta.get("calibration") or {"a": 1.0, "b": 0.0}
    pair = (cal.get("a"), cal.get("b")) if isinstance(cal, dict) else tuple(cal)[:2]
    a, b = number(pair[0], "calibration.a"), number(pair[1], "calibration.b")
    if a <= 0:
        raise ModelError(f"{where}: config.json's calibration slope a={a} must be positive (higher = more AI); "
                         "restore or recalibrate the model")
    scale = meta.get("threshold_scale", "logit")
    if scale not in ("logit", "prob"):
        raise ModelError(f"{where}: config.json's threshold_scale {scale!r} must be 'logit' or 'prob'")
    threshold = number(meta.get("threshold", 0.0), "threshold")
    if scale == "prob" and not 0.0 < threshold < 1.0:
        raise ModelError(f"{where}: config.json's threshold {threshold} on the probability scale must be in (0, 1)")
    band = number(meta.get("band", DEFAULT_BAND), "band")
    if not 0.0 <= band < 0.5:
        raise ModelError(f"{where}: config.json's band {band} must be in [0, 0.5); restore or recalibrate the model")
    return a, b, threshold, scale, band
