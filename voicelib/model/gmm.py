"""LFCC-GMM (the ASVspoof baseline): one diagonal GMM per class over LFCC frames, LLR and one-class scores."""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from voicelib.audio.features import FeatureConfig, lfcc
from voicelib.config import SAMPLE_RATE

log = logging.getLogger(__name__)


class LfccGmm:
    """ASVspoof-style baseline: LFCC (+ deltas, double deltas), one diagonal GMM per class, LLR score."""

    def __init__(self, *, n_components: int = 32, n_lfcc: int = 20, seed: int = 0,
                 max_frames_per_class: int = 100_000, sample_rate: int = SAMPLE_RATE):
        self.n_components, self.n_lfcc, self.seed = n_components, n_lfcc, seed
        self.max_frames, self.sample_rate = max_frames_per_class, sample_rate
        self.gmms: dict[int, object] = {}

    def frames(self, wave: np.ndarray) -> np.ndarray:
        """Return the [frames, 3 * n_lfcc] LFCC (+ deltas, double deltas) matrix of one wave's active frames.

        Frames more than 60 dB below the clip's loudest are dropped: runs of digital silence give identical
        vectors that collapse a mixture component, and exact zeros are a known shortcut in our data.
        """
        import librosa


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
