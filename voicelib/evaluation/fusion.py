"""Fit fused models on a run's splits and compare them: the LFCC-GMM on train, the LR and threshold on validation.

`build` writes a fused model directory that `voicelib.scoring.load.load_detector` loads as one model;
`compare` gives every member's and the fusion's EER with an interval on the same clips.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from voicelib import metrics
from voicelib.data.manifest import label_array
from voicelib.errors import DataError
from voicelib.evaluation.clips import load_waves
from voicelib.files import atomic_path, write_json
from voicelib.model.gmm import LfccGmm
from voicelib.scoring.detector import Detector
from voicelib.scoring.fusion import (
    ENSEMBLE_FILE,
    FUSION_FILE,
    GMM,
    GMM_FILE,
    MIN_FIT_CLIPS,
    FusedDetector,
    member_names,
)

log = logging.getLogger(__name__)


def fit_lr(scores: pd.DataFrame, members: Sequence[str], *, split: str = "val", C: float = 10.0,
           seed: int = 0) -> tuple[list[float], float]:
    """Logistic-regression weights and bias over member score columns, fitted on the `split` rows only."""
    part = scores[scores["split"] == split].dropna(subset=list(members))
    n_ai, n_human = int(part["y"].sum()), int((part["y"] == 0).sum())
    if min(n_ai, n_human) < MIN_FIT_CLIPS:
        raise DataError(f"fusion: the {split} split has {n_ai} AI and {n_human} human scored clips (< {MIN_FIT_CLIPS} "
                        "of a class); collect more validation clips or use combine='mean'")
    lr = LogisticRegression(C=C, max_iter=1000, random_state=seed)
    lr.fit(part[list(members)].to_numpy(dtype=np.float64), part["y"].to_numpy(dtype=int))
    return [float(w) for w in lr.coef_.ravel()], float(lr.intercept_[0])


def _split_table(det: FusedDetector, frame: pd.DataFrame, *, kw: dict) -> pd.DataFrame:
    """Member scores of one split's clips with their labels, speakers and split."""
    waves, ok = load_waves(frame, det.sample_rate)
    table, _ = det.member_scores(waves, det.sample_rate, **kw)
    part = frame[ok].reset_index(drop=True)
    return table.assign(y=label_array(part), split=part["split"].to_numpy(),
                        speaker=part["speaker"].astype(str).to_numpy())


def build(model_dirs: Sequence[str | os.PathLike], manifest: pd.DataFrame, out_dir: str | os.PathLike, *,
          gmm: bool = True, combine: str = "lr", seed: int = 0, gmm_components: int = 32,
          chunk_duration: float = 3.0, overlap: float = 0.5) -> FusedDetector:
    """Fit the fusion (GMM on train, LR and threshold on validation) and write a fused model directory."""
    out_dir = Path(out_dir)
    nets = [Detector.load(d, backend="torch") for d in model_dirs]
    det = FusedDetector(nets, member_names(model_dirs), "mean")
    kw = {"chunk_duration": chunk_duration, "overlap": overlap}
    if gmm:
        train = manifest[manifest["split"] == "train"].reset_index(drop=True)
        waves, ok = load_waves(train, det.sample_rate)
        det.combine, det.weights = "lr", [0.0] * (len(nets) + 1)
        det.gmm = LfccGmm(n_components=gmm_components, seed=seed, sample_rate=det.sample_rate).fit(
            [det.prepared(w) for w in waves], label_array(train[ok]))
    val = _split_table(det, manifest[manifest["split"] == "val"].reset_index(drop=True), kw=kw)
    det.combine = combine
    if combine == "lr":
        det.weights, det.bias = fit_lr(val, det.members, seed=seed)
    fused = det.fuse(val)
    rate, det.threshold_logit = metrics.eer(val["y"], fused)
    spec = {"format": "voicelib-fusion", "format_version": 1, "combine": combine, "weights": det.weights,
            "bias": det.bias, "threshold": det.threshold_logit, "threshold_scale": "logit", "fitted_on": "validation",
            "members": [{"name": n, "kind": "network", "path": os.path.relpath(Path(d).resolve(), out_dir.resolve())}
                        for n, d in zip(det.names, model_dirs)] + ([{"name": GMM, "kind": GMM}] if gmm else []),
            "validation": {"n": len(val), "n_ai": int(val["y"].sum()), "fused_eer": rate,
                           "member_eer": {m: metrics.eer(val["y"], val[m])[0] for m in det.members}}}
    out_dir.mkdir(parents=True, exist_ok=True)
    if gmm:
        with atomic_path(out_dir / GMM_FILE) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **det.gmm.to_arrays())
        spec["gmm"] = GMM_FILE
    write_json(out_dir / (FUSION_FILE if gmm else ENSEMBLE_FILE), spec)
    log.info("fusion of %s: validation EER %.3f (members %s)", det.members, rate, spec["validation"]["member_eer"])
    return FusedDetector.load(out_dir)


def compare(det: FusedDetector, frame: pd.DataFrame, *, seed: int = 0, n_boot: int = 1000,
            chunk_duration: float = 3.0, overlap: float = 0.5) -> dict[str, Any]:
    """EER (bootstrap interval) and ROC-AUC of every member and of the fusion on the same clips of `frame`."""
    table = _split_table(det, frame.reset_index(drop=True), kw={"chunk_duration": chunk_duration, "overlap": overlap})
    table = table.dropna(subset=det.members).assign(fusion=lambda t: det.fuse(t))
    by_speaker = table.groupby("y")["speaker"].nunique().min() >= 5
    out = {}
    for name in [*det.members, "fusion"]:
        y, s = table["y"].to_numpy(), table[name].to_numpy()
        ci = metrics.bootstrap_ci(y, s, threshold=0.0, seed=seed, n_boot=n_boot,
                                  clusters=table["speaker"].to_numpy() if by_speaker else None)
        out[name] = {"eer": metrics.eer(y, s)[0], "eer_ci": ci["eer"], "roc_auc": metrics.roc_auc(y, s),
                     "n": len(y), "n_ai": int(y.sum())}
    out["resampling"] = "speakers within each class" if by_speaker else "clips within each class"
    return out
