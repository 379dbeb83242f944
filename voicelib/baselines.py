"""Baselines beside the model: the LFCC-GMM of the ASVspoof challenges, the same GMMs as a one-class detector,
and a shortcut probe on trivial cues.

The one-class score (`gmm_novelty`) asks only how unlike the human GMM a clip is; the LLR also asks how like
the AI GMM it is, and inverts on an engine family whose clips resemble neither (leave-one-family-out:
bench/results/fusion_rules.md).
"""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from voicelib.metrics import eer

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


class LfccGmm:
    """ASVspoof-style baseline: LFCC (+ deltas, double deltas), one diagonal GMM per class, LLR score."""

    def __init__(self, *, n_components: int = 32, n_lfcc: int = 20, seed: int = 0,
                 max_frames_per_class: int = 100_000, sample_rate: int = 16000):
        self.n_components, self.n_lfcc, self.seed = n_components, n_lfcc, seed
        self.max_frames, self.sample_rate = max_frames_per_class, sample_rate
        self.gmms: dict[int, object] = {}

    def frames(self, wave: np.ndarray) -> np.ndarray:
        """Return the [frames, 3 * n_lfcc] LFCC (+ deltas, double deltas) matrix of one wave's active frames.

        Frames more than 60 dB below the clip's loudest are dropped: runs of digital silence give identical
        vectors that collapse a mixture component, and exact zeros are a known shortcut in our data.
        """
        import librosa

        from voicelib.features import FeatureConfig, lfcc

        wave = np.asarray(wave, dtype=np.float32)
        cfg = FeatureConfig(sample_rate=self.sample_rate, fmax=self.sample_rate / 2, n_lfcc=self.n_lfcc,
                            lfcc_deltas=True)
        x = lfcc(wave, cfg).T
        rms = librosa.feature.rms(y=wave, frame_length=cfg.n_fft, hop_length=cfg.hop_length, center=True)[0]
        n = min(len(x), len(rms))
        active = rms[:n] > rms[:n].max() * 1e-3
        return x[:n][active] if active.sum() >= 3 else x[:n]

    def fit(self, waves: Sequence[np.ndarray], labels: Sequence[int]) -> "LfccGmm":
        """Fit one GMM on the frames of each class (labels 1 = AI), subsampling frames for speed."""
        from sklearn.mixture import GaussianMixture

        labels = np.asarray(labels).astype(int)
        if np.unique(labels).size < 2:
            raise ValueError("LfccGmm.fit needs human and AI clips in the training split")
        rng = np.random.default_rng(self.seed)
        self.mean = self.std = None
        for cls in (0, 1):
            x = np.concatenate([self.frames(w) for w, y in zip(waves, labels) if y == cls])
            if len(x) > self.max_frames:
                x = x[rng.choice(len(x), self.max_frames, replace=False)]
            k = min(self.n_components, max(1, len(x) // 20))
            gmm = GaussianMixture(k, covariance_type="diag", max_iter=100, reg_covar=1e-3, random_state=self.seed)
            gmm.fit(self._standardise(x, fit=cls == 0))
            self.gmms[cls] = (gmm.means_, gmm.covariances_, gmm.weights_)
            log.info("LFCC-GMM class %d: %d frames, %d components", cls, len(x), k)
        return self

    def _standardise(self, x: np.ndarray, *, fit: bool = False) -> np.ndarray:
        """Scale frames by the human-class mean and spread, so one covariance floor suits every coefficient."""
        if fit:
            self.mean, self.std = x.mean(axis=0), x.std(axis=0) + 1e-6
        return (x - self.mean) / self.std

    def class_logliks(self, waves: Sequence[np.ndarray]) -> np.ndarray:
        """Mean frame log-likelihood under each class's GMM: [waves, 2] (column 0 human, 1 AI)."""
        if not self.gmms:
            raise ValueError("LfccGmm scored before fit")
        out = np.empty((len(waves), 2))
        for i, w in enumerate(waves):
            x = self._standardise(self.frames(w))
            out[i] = [np.mean(diag_gmm_loglik(x, *self.gmms[c])) for c in (0, 1)]
        return out

    def score(self, waves: Sequence[np.ndarray]) -> np.ndarray:
        """Return the mean frame log-likelihood ratio, AI minus human, per wave."""
        ll = self.class_logliks(waves)
        return ll[:, 1] - ll[:, 0]

    def novelty(self, waves: Sequence[np.ndarray]) -> np.ndarray:
        """One-class score: the negative mean frame log-likelihood under the human GMM (high = unlike human speech)."""
        return -self.class_logliks(waves)[:, 0]

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The fitted model as plain arrays (means, variances, weights per class; scaling; settings) for np.savez."""
        if not self.gmms:
            raise ValueError("LfccGmm.to_arrays called before fit")
        arrays = {"mean": self.mean, "std": self.std, "n_lfcc": np.array(self.n_lfcc),
                  "sample_rate": np.array(self.sample_rate)}
        for cls, (means, variances, weights) in self.gmms.items():
            arrays.update({f"means_{cls}": means, f"variances_{cls}": variances, f"weights_{cls}": weights})
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "LfccGmm":
        """Rebuild a fitted model from `to_arrays()` output (no pickle, no sklearn needed to score)."""
        gmm = cls(n_lfcc=int(arrays["n_lfcc"]), sample_rate=int(arrays["sample_rate"]))
        gmm.mean, gmm.std = np.asarray(arrays["mean"]), np.asarray(arrays["std"])
        gmm.gmms = {c: tuple(np.asarray(arrays[f"{k}_{c}"], dtype=np.float64)
                             for k in ("means", "variances", "weights"))
                    for c in (0, 1)}
        gmm.n_components = len(gmm.gmms[0][2])
        return gmm


def diag_gmm_loglik(x: np.ndarray, means: np.ndarray, variances: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Log-likelihood of each row of `x` [n, d] under a diagonal-covariance Gaussian mixture ([k, d], [k, d], [k])."""
    from scipy.special import logsumexp

    precision = 1.0 / variances
    sq = (x**2) @ precision.T - 2.0 * x @ (means * precision).T + np.sum(means**2 * precision, axis=1)
    log_norm = -0.5 * (x.shape[1] * np.log(2 * np.pi) + np.sum(np.log(variances), axis=1))
    return logsumexp(np.log(weights) + log_norm - 0.5 * sq, axis=1)
