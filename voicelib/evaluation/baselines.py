"""Baselines beside the model: the shortcut probe on trivial cues, and the names of the baseline score columns."""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from voicelib import metrics
from voicelib.metrics import eer
from voicelib.model.gmm import LfccGmm

log = logging.getLogger(__name__)


NAMES = ("lfcc_gmm", "gmm_novelty", "shortcut_probe")  # score columns of the baselines, beside the model's


SHORTCUT_FEATURES = [
    "duration_s", "leading_silence_s", "trailing_silence_s", "zero_fraction", "longest_zero_run_s",
    "rms_dbfs", "dc_offset", "rolloff_hz", "bandwidth_hz",
]


FRAME_S = 0.01  # silence is measured on 10 ms frames


SILENCE_DB = 40.0  # a frame this far below the loudest frame counts as silence


def _frame_rms(wave: np.ndarray, sr: int) -> np.ndarray:
    hop = max(int(sr * FRAME_S), 1)
    n = wave.size // hop
    if n == 0:
        return np.sqrt(np.mean(wave.astype(np.float64) ** 2, keepdims=True))
    frames = wave[: n * hop].astype(np.float64).reshape(n, hop)
    return np.sqrt(np.mean(frames**2, axis=1))


def _longest_zero_run(wave: np.ndarray) -> int:
    zero = np.r_[0, (wave == 0).astype(np.int8), 0]
    edges = np.flatnonzero(np.diff(zero))
    return int((edges[1::2] - edges[::2]).max()) if edges.size else 0


def _spectral_cues(wave: np.ndarray, sr: int) -> tuple[float, float]:
    """Mean 85 % roll-off and mean spectral bandwidth (Hz) over frames that are not silent."""
    import librosa  # heavy import, only needed here

    spec = np.abs(librosa.stft(wave.astype(np.float32), n_fft=512, hop_length=256)) ** 2
    energy = spec.sum(axis=0)
    if not energy.any():
        return 0.0, 0.0
    keep = energy > energy.max() * 10 ** (-SILENCE_DB / 10)
    spec = spec[:, keep]
    freqs = np.fft.rfftfreq(512, 1 / sr)
    cum = np.cumsum(spec, axis=0)
    rolloff = freqs[np.argmax(cum >= 0.85 * cum[-1], axis=0)]
    norm = spec / spec.sum(axis=0, keepdims=True)
    centroid = (freqs[:, None] * norm).sum(axis=0)
    bandwidth = np.sqrt(((freqs[:, None] - centroid) ** 2 * norm).sum(axis=0))
    return float(rolloff.mean()), float(bandwidth.mean())


def shortcut_features(wave: np.ndarray, sr: int) -> dict[str, float]:
    """Trivial cues that say nothing about the voice itself: length, silence, digital zeros, level, DC, band."""
    wave = np.asarray(wave, dtype=np.float32).ravel()
    if wave.size == 0:
        raise ValueError("shortcut_features: empty wave; drop empty clips before probing")
    rms = _frame_rms(wave, sr)
    loud = np.flatnonzero(rms > max(rms.max() * 10 ** (-SILENCE_DB / 20), 1e-6))
    n_frames = rms.size
    lead = loud[0] if loud.size else n_frames
    trail = n_frames - 1 - loud[-1] if loud.size else n_frames
    level = float(np.sqrt(np.mean(wave.astype(np.float64) ** 2)))
    rolloff, bandwidth = _spectral_cues(wave, sr)
    return {
        "duration_s": wave.size / sr,
        "leading_silence_s": float(lead * FRAME_S),
        "trailing_silence_s": float(trail * FRAME_S),
        "zero_fraction": float(np.mean(wave == 0)),
        "longest_zero_run_s": _longest_zero_run(wave) / sr,
        "rms_dbfs": float(20 * np.log10(max(level, 1e-10))),
        "dc_offset": float(wave.mean()),
        "rolloff_hz": rolloff,
        "bandwidth_hz": bandwidth,
    }


def shortcut_matrix(waves: Sequence[np.ndarray], sr: int) -> np.ndarray:
    """Stack shortcut features of many waves into an [n, len(SHORTCUT_FEATURES)] array."""
    rows = [shortcut_features(w, sr) for w in waves]
    return np.array([[r[k] for k in SHORTCUT_FEATURES] for r in rows], dtype=np.float64)


class ShortcutProbe:
    """Standardised logistic regression on trivial cues only; far above chance means the data has shortcuts."""

    def __init__(self, *, seed: int = 0, warn_eer: float = 0.35, C: float = 1.0):
        self.seed, self.warn_eer, self.C = seed, warn_eer, C
        self.pipeline = None

    def fit(self, features: np.ndarray, labels: Sequence[int]) -> "ShortcutProbe":
        """Fit on the training split's shortcut features (labels 1 = AI)."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        labels = np.asarray(labels).astype(int)
        if np.unique(labels).size < 2:
            raise ValueError("ShortcutProbe.fit needs human and AI clips in the training split")
        self.pipeline = make_pipeline(StandardScaler(),
                                      LogisticRegression(C=self.C, max_iter=2000, random_state=self.seed))
        self.pipeline.fit(np.asarray(features, dtype=np.float64), labels)
        return self

    def score(self, features: np.ndarray) -> np.ndarray:
        """Return the probe's log-odds of AI (higher = more AI)."""
        if self.pipeline is None:
            raise ValueError("ShortcutProbe.score called before fit")
        return self.pipeline.decision_function(np.asarray(features, dtype=np.float64))

    def weights(self) -> dict[str, float]:
        """Standardised coefficients by cue (positive pushes toward AI), strongest first."""
        coef = self.pipeline[-1].coef_.ravel()
        order = np.argsort(-np.abs(coef))
        return {SHORTCUT_FEATURES[i]: float(coef[i]) for i in order}

    def verdict(self, labels: Sequence[int], scores: np.ndarray) -> dict:
        """Evaluate the probe on held-out clips and say whether the data carries shortcuts."""
        rate, _ = eer(labels, scores)
        weights = self.weights()
        strongest = ", ".join(list(weights)[:3])
        if rate < self.warn_eer:
            warning = (f"SHORTCUT WARNING: a logistic regression on trivial cues alone (no voice information) "
                       f"reaches EER {rate:.1%} on the test split (chance is 50%); strongest cues: {strongest}. "
                       f"Part of any model's accuracy on this data may come from these cues, not from the voice.")
        else:
            warning = None
        return {"eer": rate, "verdict": "shortcuts" if warning else "no strong shortcut",
                "warn_below_eer": self.warn_eer, "weights": weights, "warning": warning}


def run_baselines(train: tuple, test: tuple, *, seed: int, sr: int, gmm_components: int = 32) -> tuple[dict, dict]:
    """Fit the LFCC-GMM and the shortcut probe on train waves, score the test waves; return (metrics, scores)."""
    (train_w, train_y), (test_w, test_y) = train, test
    gmm = LfccGmm(n_components=gmm_components, seed=seed, sample_rate=sr).fit(train_w, train_y)
    ll = gmm.class_logliks(test_w)
    gmm_scores, novelty = ll[:, 1] - ll[:, 0], -ll[:, 0]
    gmm_eer, gmm_thr = metrics.eer(test_y, gmm_scores)
    lfcc = {"eer": gmm_eer, "roc_auc": metrics.roc_auc(test_y, gmm_scores), "n_components": gmm_components,
            "features": "LFCC 20 + deltas + double deltas", "score": "mean frame log-likelihood ratio, AI minus human"}
    # a baseline decision at LLR 0 (equal likelihood), not tuned on test
    lfcc.update({k: v for k, v in metrics.binary_metrics(test_y, gmm_scores, 0.0).items()
                 if k in ("accuracy", "confusion")})
    probe = ShortcutProbe(seed=seed).fit(shortcut_matrix(train_w, sr), train_y)
    probe_scores = probe.score(shortcut_matrix(test_w, sr))
    verdict = probe.verdict(test_y, probe_scores)
    verdict["roc_auc"] = metrics.roc_auc(test_y, probe_scores)
    one_class = {"eer": metrics.eer(test_y, novelty)[0], "roc_auc": metrics.roc_auc(test_y, novelty),
                 "score": "negative mean frame log-likelihood under the human GMM (one-class: unlike human speech)"}
    return ({"lfcc_gmm": lfcc, "gmm_novelty": one_class, "shortcut_probe": verdict},
            {"lfcc_gmm": gmm_scores, "gmm_novelty": novelty, "shortcut_probe": probe_scores})
