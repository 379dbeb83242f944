"""Decode and score a manifest's clips the way detection scores files."""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import pandas as pd

from voicelib.audio import decode
from voicelib.data.manifest import label_array
from voicelib.metrics import compute_metrics, eer  # noqa: F401 - eer is part of this module's API

log = logging.getLogger(__name__)


def load_waves(frame: pd.DataFrame, sr: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Decode every clip of a manifest part; return the waves and a mask of those that loaded."""
    waves, ok = [], []
    for path in frame["path"]:
        try:
            waves.append(decode.load(path, sr=sr))
            ok.append(True)
        except decode.AudioError as exc:
            log.warning("skipping %s", exc)
            ok.append(False)
    return waves, np.array(ok, dtype=bool)


def score_waves(detector, waves: Sequence[np.ndarray], *, chunk_duration: float, overlap: float,
                files_per_batch: int = 32) -> pd.DataFrame:
    """Mean AI logit and calibrated probability per wave, scored the way detection scores files."""
    rows = []
    for i in range(0, len(waves), files_per_batch):
        part = waves[i:i + files_per_batch]
        for r in detector.score_arrays(part, detector.sample_rate, chunk_duration=chunk_duration, overlap=overlap):
            families = r.get("familyDistribution") or {}
            rows.append({"logit": r.get("aiLogit", np.nan), "prob": r.get("aiScore", np.nan), "error": r.get("error"),
                         "predicted_family": max(families, key=families.get) if families else None})
    frame = pd.DataFrame(rows)
    has_head = "predicted_family" in frame and frame["predicted_family"].notna().any()
    return frame if has_head else frame.drop(columns="predicted_family", errors="ignore")


def score_split(det, frame: pd.DataFrame, kw: dict) -> tuple[pd.DataFrame, list[np.ndarray], int]:
    """Load and score one split; return (rows that scored with y/logit/prob, their waves, number that failed)."""
    waves, ok = load_waves(frame, det.sample_rate)
    scored = score_waves(det, waves, **kw)
    keep = scored["error"].isna().to_numpy()
    part = pd.concat([frame[ok].reset_index(drop=True), scored.drop(columns="error")], axis=1)[keep]
    part = part.reset_index(drop=True)
    part["y"] = label_array(part)
    return part, [w for w, k in zip(waves, keep) if k], int((~ok).sum() + (~keep).sum())


def labelled_waves(frame: pd.DataFrame, sr: int) -> tuple[np.ndarray, list[np.ndarray], int]:
    """Labels and waves of the clips of a split that decode (for the baselines, which need no model)."""
    waves, ok = load_waves(frame, sr)
    return label_array(frame[ok]), waves, int((~ok).sum())
