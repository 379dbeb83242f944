"""Score fusion and ensembles: several scorers that detection, evaluation and the CLI read as one model.

A fused model directory holds `fusion.json` (network members plus the LFCC-GMM) or `ensemble.json`
(network members only): the member model directories (paths relative to it), how the members' scores
are combined, and the fused threshold; the LFCC-GMM is stored as plain arrays in `gmm.npz` (means,
variances and weights per class), so loading never unpickles anything.

Member scores: a network's calibrated logit (its own Platt map of the mean chunk logit), the GMM's mean
frame log-likelihood ratio on the wave prepared as the first network prepares it. Combinations:
"lr" -- a logistic regression fitted on VALIDATION scores only (its output is a calibrated logit);
"mean" -- the mean of the networks' calibrated logits (no fitting; the GMM cannot join, its LLR is not
calibrated). The fused probability is the sigmoid of the fused logit; the threshold is the validation
EER threshold of the fused scores (or, for an unfitted mean, the mean of the members' threshold logits).
Chunks, language, multi-speaker and family outputs come from the first network; `members` says what
each member scored.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from voicelib import metrics
from voicelib.audio import decode, dsp
from voicelib.errors import AudioError, ModelError
from voicelib.files import read_json
from voicelib.languages import language_name
from voicelib.model import store
from voicelib.model.gmm import LfccGmm
from voicelib.scoring.decisions import DEFAULT_BAND, classify
from voicelib.scoring.detector import Detector

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

FUSION_FILE, ENSEMBLE_FILE, GMM_FILE = "fusion.json", "ensemble.json", "gmm.npz"
COMBINES = ("lr", "mean")
GMM = "lfcc_gmm"
MIN_FIT_CLIPS = 5  # per class: fewer validation clips than this give no fusion


def fused_file(model_dir: str | os.PathLike) -> Path | None:
    """The fusion.json or ensemble.json of a directory, or None when it is a plain model directory."""
    for name in (FUSION_FILE, ENSEMBLE_FILE):
        if (Path(model_dir) / name).is_file():
            return Path(model_dir) / name
    return None


def _logit(p: np.ndarray | float) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-9, 1 - 1e-9)
    return np.log(p / (1 - p))


def member_names(model_dirs: Sequence[str | os.PathLike]) -> list[str]:
    """A distinct name per network member: its directory name (numbered when two share one)."""
    names = []
    for d in model_dirs:
        name = Path(d).resolve().name or "network"
        names.append(name if name not in names and name != GMM else f"{name}_{len(names) + 1}")
    return names


@dataclass
class FusedDetector:
    """Network members (and optionally an LFCC-GMM) combined into one score; the Detector scoring interface."""

    networks: list[Detector]
    names: list[str]
    combine: str = "mean"
    weights: list[float] = field(default_factory=list)  # lr: one per member (networks, then the GMM)
    bias: float = 0.0
    threshold_logit: float = 0.0
    gmm: LfccGmm | None = None
    band: float = DEFAULT_BAND
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.combine not in COMBINES:
            raise ValueError(f"fusion combine {self.combine!r} unknown; use one of {', '.join(COMBINES)}")
        if self.combine == "mean" and self.gmm is not None:
            raise ValueError("fusion: combine='mean' averages calibrated network logits; the GMM needs combine='lr'")
        if self.combine == "lr" and len(self.weights) != len(self.members):
            raise ValueError(f"fusion: {len(self.weights)} weights for {len(self.members)} members {self.members}")
        self.meta = {**self.meta, "threshold": self.threshold_logit, "threshold_scale": "logit",
                     "calibration": {"a": 1.0, "b": 0.0}, "fusion": {"combine": self.combine, "members": self.members}}

    @property
    def members(self) -> list[str]:
        """Member names in score order: the networks, then the GMM."""
        return list(self.names) + ([GMM] if self.gmm is not None else [])

    @property
    def primary(self) -> Detector:
        return self.networks[0]

    sample_rate = property(lambda self: self.primary.sample_rate)
    max_duration = property(lambda self: self.primary.max_duration)
    families = property(lambda self: self.primary.families)
    segment_seconds = property(lambda self: self.primary.segment_seconds)
    calibration = property(lambda self: (1.0, 0.0))  # the fused logit is already calibrated
    threshold = property(lambda self: float(metrics.apply_platt(self.threshold_logit, 1.0, 0.0)))

    def prepared(self, wave: np.ndarray) -> np.ndarray:
        """The wave as the first network's training saw it."""
        return self.primary.prepared(wave)

    def fuse(self, table: pd.DataFrame | Mapping[str, np.ndarray]) -> np.ndarray:
        """Fused logits from a table of member scores (one column per member: a DataFrame or a dict of arrays)."""
        x = np.column_stack([np.asarray(table[m], dtype=np.float64) for m in self.members])
        if self.combine == "mean":
            return x.mean(axis=1)
        return x @ np.asarray(self.weights, dtype=np.float64) + self.bias

    def member_scores(self, waves: Sequence[np.ndarray], sr: int, *, names: Sequence[str] | None = None,
                      chunk_duration: float = 3.0, overlap: float = 0.5) -> tuple[pd.DataFrame, list[dict]]:
        """Each member's score per wave (NaN where a wave could not be scored) and the first network's results."""
        import pandas as pd  # evaluation wants a DataFrame; scoring itself (score_arrays) never imports pandas

        table, first = self._member_table(waves, sr, names=names, chunk_duration=chunk_duration, overlap=overlap)
        return pd.DataFrame(table), first

    def _member_table(self, waves: Sequence[np.ndarray], sr: int, *, names: Sequence[str] | None,
                      chunk_duration: float, overlap: float) -> tuple[dict[str, np.ndarray], list[dict]]:
        """Each member's scores as one array per member, and the first network's results."""
        table, first = {}, None
        for name, det in zip(self.names, self.networks):
            results = det.score_arrays(waves, sr, names=names, chunk_duration=chunk_duration, overlap=overlap)
            a, b = det.calibration
            table[name] = np.array([a * r["aiLogit"] + b if "error" not in r else np.nan for r in results])
            first = results if first is None else first
        if self.gmm is not None:
            ok = [i for i, r in enumerate(first) if "error" not in r]
            gsr = self.gmm.sample_rate
            prepared = [self.prepared(dsp.resample(np.asarray(waves[i], np.float32), sr, gsr) if sr != gsr
                                      else np.asarray(waves[i], np.float32)) for i in ok]
            scores = np.full(len(waves), np.nan)
            scores[ok] = self.gmm.score(prepared) if ok else []
            table[GMM] = scores
        return table, first

    def score_arrays(self, waves: Sequence[np.ndarray], sr: int, *, names: Sequence[str] | None = None,
                     chunk_duration: float = 3.0, overlap: float = 0.5) -> list[dict]:
        """Score many waves with every member; the first network's result with the fused score in front."""
        table, first = self._member_table(waves, sr, names=names, chunk_duration=chunk_duration, overlap=overlap)
        fused = self.fuse(table)
        out = []
        for i, r in enumerate(first):
            if "error" in r or not np.isfinite(fused[i]):
                out.append(r if "error" in r else {"file": r["file"], "error": "a fusion member could not score it"})
                continue
            prob = float(metrics.apply_platt(fused[i], 1.0, 0.0))
            label, confidence = classify(prob, self.threshold, band=self.band)
            out.append({**r, "aiScore": round(prob, 6), "aiLogit": round(float(fused[i]), 6), "classification": label,
                        "confidence": round(confidence, 6), "threshold": round(self.threshold, 6),
                        "members": {m: round(float(table[m][i]), 6) for m in self.members},
                        "fusion": self.combine})
        return out

    def score_array(self, wave: np.ndarray, sr: int, *, chunk_duration: float = 3.0, overlap: float = 0.5,
                    name: str = "<array>") -> dict:
        """Score one wave; raises AudioError when it cannot be scored."""
        result = self.score_arrays([wave], sr, names=[name], chunk_duration=chunk_duration, overlap=overlap)[0]
        if "error" in result:
            raise AudioError(name, result["error"])
        return result

    def score_files(self, paths: Sequence[str | os.PathLike], *, chunk_duration: float = 3.0,
                    overlap: float = 0.5) -> list[dict]:
        """Decode and score files together (whole files: fusion does not stream); bad files become error entries."""

        waves, names, slots, results = [], [], [], [None] * len(paths)
        for i, path in enumerate(paths):
            try:
                waves.append(decode.load(path, sr=self.sample_rate, max_duration=self.max_duration))
                names.append(str(path))
                slots.append(i)
            except AudioError as exc:
                results[i] = {"file": str(path), "error": exc.reason}
        scored = self.score_arrays(waves, self.sample_rate, names=names, chunk_duration=chunk_duration,
                                   overlap=overlap) if waves else []
        for i, res in zip(slots, scored):
            results[i] = res
        return results

    def score_file(self, path: str | os.PathLike, *, chunk_duration: float = 3.0, overlap: float = 0.5) -> dict:
        """Score one file; an error entry when it is unusable."""
        return self.score_files([path], chunk_duration=chunk_duration, overlap=overlap)[0]

    def score_path(self, path: str | os.PathLike, *, chunk_duration: float = 3.0, overlap: float = 0.5) -> dict:
        """Score one file; raises AudioError when it is unusable."""
        result = self.score_file(path, chunk_duration=chunk_duration, overlap=overlap)
        if "error" in result:
            raise AudioError(str(path), result["error"])
        return result

    score_stream = score_path

    @classmethod
    def load(cls, model_dir: str | os.PathLike, *, device: str = "cpu", band: float | None = None,
             backend: str = "auto", max_duration: float | None = None) -> "FusedDetector":
        """Load a fused model directory (fusion.json or ensemble.json); ModelError when it is unusable."""
        path = fused_file(model_dir)
        if path is None:
            raise ModelError(f"{model_dir}: no {FUSION_FILE} or {ENSEMBLE_FILE}; build one with "
                             "voicelib.evaluation.fusion.build")
        try:
            spec = read_json(path)
            members = [m for m in spec["members"] if m["kind"] == "network"]
            dirs = [(path.parent / m["path"]).resolve() for m in members]
            gmm = _load_gmm(path.parent / spec["gmm"]) if spec.get("gmm") else None
            kw = {k: spec[k] for k in ("weights", "bias") if k in spec}
            threshold = float(spec["threshold"])
            combine = spec["combine"]
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{path}: not a voicelib fusion file ({exc}); rebuild it with fusion.build") from None
        for d in dirs:
            if not d.is_dir():
                raise ModelError(f"{path}: member model {d} is missing; restore it or rebuild the fusion")
        nets = [Detector.load(d, device=device, band=band, backend=backend, max_duration=max_duration) for d in dirs]
        band = float(spec.get("band") or DEFAULT_BAND) if band is None else band  # cross-fitted: its own
        return cls(nets, [m["name"] for m in members], combine, threshold_logit=threshold, gmm=gmm, band=band,
                   meta={**spec, "model_dir": str(model_dir)}, **kw)


def _load_gmm(path: Path) -> LfccGmm:
    """The LFCC-GMM from its arrays (np.load without pickle)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return LfccGmm.from_arrays({k: data[k] for k in data.files})
    except (OSError, KeyError, ValueError) as exc:
        raise ModelError(f"{path}: unreadable GMM arrays ({exc}); rebuild the fusion") from None


def store_versions(language: str, *, root: str | os.PathLike = "models", last: int = 3) -> list[Path]:
    """The newest `last` registered versions of `language` in the model store (members for an ensemble)."""
    versions = store.list_models(root, language)[-last:]
    if len(versions) < 2:
        raise ModelError(f"{root}: {len(versions)} stored version(s) of {language}; an ensemble needs 2 or more "
                         "(train and register another model)")
    return [Path(root) / language_name(language) / v for v in versions]


def ensemble(model_dirs: Sequence[str | os.PathLike], *, device: str = "cpu", band: float | None = None,
             backend: str = "auto", max_duration: float | None = None) -> FusedDetector:
    """An unfitted ensemble of model directories: the mean of their calibrated logits, the mean threshold logit."""
    nets = [Detector.load(d, device=device, band=band, backend=backend, max_duration=max_duration) for d in model_dirs]
    threshold = float(np.mean([_logit(det.threshold) for det in nets]))
    return FusedDetector(nets, member_names(model_dirs), "mean", threshold_logit=threshold,
                         band=DEFAULT_BAND if band is None else band,
                         meta={"members": [str(d) for d in model_dirs]})
