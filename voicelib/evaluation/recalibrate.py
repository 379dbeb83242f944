"""Fit a model's operating point on a user's own labelled recordings (their channel, their speakers).

Thresholds do not transfer across speakers and channels (bench/RESULTS.md): a deployment should set its own.
`recalibrate` scores the user's human recordings (and AI ones, when given) exactly as detection scores files,
puts the threshold where the chosen share of those humans is called AI, says with a bootstrap interval over
speakers what that share really is and what it costs in missed AI clips, and writes the result as a new model
version in the store (promoted; `models rollback` returns to the previous one).
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voicelib import metrics
from voicelib.errors import DataError, ModelError
from voicelib.files import read_json, write_json
from voicelib.model import store
from voicelib.model.saving import CONFIG, MODEL_FILES
from voicelib.scoring.detector import Detector
from voicelib.scoring.paths import expand_paths

log = logging.getLogger(__name__)

MIN_HUMAN_FILES = 20  # fewer human recordings than this cannot place a threshold at a 5 % share
MIN_SPEAKERS = 3  # human speakers (sub-folders); one voice says nothing about the next one
N_BOOT = 1000


@dataclass(frozen=True)
class Scored:
    """The mean chunk logit of each recording that scored, with its speaker."""

    logits: np.ndarray
    speakers: np.ndarray
    failed: int
    speakers_from_folders: bool


def score_folder(detector: Detector, folder: str | os.PathLike, *, chunk_duration: float,
                 overlap: float) -> Scored:
    """Score every audio file under `folder`; a file's speaker is its first sub-folder (else the file itself)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder of recordings; pass a folder (one sub-folder per speaker)")
    files, _ = expand_paths([folder])
    results = detector.score_files(files, chunk_duration=chunk_duration, overlap=overlap)
    ok = [(f, r) for f, r in zip(files, results) if "error" not in r]
    parts = [Path(f).relative_to(folder).parts for f, _ in ok]
    by_folder = all(len(p) > 1 for p in parts) and bool(parts)
    speakers = np.array([p[0] if by_folder else "/".join(p) for p in parts])
    return Scored(np.array([r["aiLogit"] for _, r in ok], dtype=float), speakers, len(results) - len(ok), by_folder)


def check_enough(human: Scored, folder: str | os.PathLike) -> None:
    """Refuse with one line when the human recordings cannot place a threshold."""
    n, k = len(human.logits), len(set(human.speakers))
    if n < MIN_HUMAN_FILES or (human.speakers_from_folders and k < MIN_SPEAKERS):
        raise DataError(f"calibrate: {folder} holds {n} usable human recordings from {k} speaker folder(s); at least "
                        f"{MIN_HUMAN_FILES} recordings from {MIN_SPEAKERS} speakers (one sub-folder each) are needed")


def _share_above(scored: Scored, threshold: float, *, above: bool, seed: int) -> dict[str, Any]:
    """Share of recordings at or above (or below) the threshold, with a 95 % bootstrap interval over speakers."""
    hits = (scored.logits >= threshold) if above else (scored.logits < threshold)
    speakers = sorted(set(scored.speakers))
    groups = [hits[scored.speakers == s] for s in speakers]
    rng = np.random.default_rng(seed)
    draws = [np.concatenate([groups[i] for i in rng.integers(0, len(groups), len(groups))]).mean()
             for _ in range(N_BOOT)]
    return {"share": float(hits.mean()), "ci95": [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))],
            "n": int(hits.size), "speakers": len(speakers)}


def operating_point(human: Scored, ai: Scored | None, *, target_fpr: float, meta: dict,
                    seed: int = 0) -> dict[str, Any]:
    """Threshold (logit) calling `target_fpr` of these humans AI; calibration and band refitted when AI is given."""
    if not 0.0 < target_fpr < 0.5:
        raise ValueError(f"target_fpr {target_fpr} must be in (0, 0.5), e.g. 0.05 to call 5 % of people AI")
    threshold = float(np.quantile(human.logits, 1.0 - target_fpr, method="higher"))
    cal = meta.get("calibration") or {"a": 1.0, "b": 0.0}
    a, b = (float(cal["a"]), float(cal["b"])) if isinstance(cal, dict) else (float(cal[0]), float(cal[1]))
    point = {"threshold": threshold, "calibration": {"a": a, "b": b}, "band": meta.get("band"),
             "humans_called_ai": _share_above(human, threshold, above=True, seed=seed), "target_fpr": target_fpr,
             "speakers_from_folders": human.speakers_from_folders, "failed_files": human.failed}
    if ai is not None and len(ai.logits):
        point["ai_missed"] = _share_above(ai, threshold, above=False, seed=seed)
        labels = np.r_[np.zeros(len(human.logits)), np.ones(len(ai.logits))]
        (a, b), band, refused = metrics.calibrate(labels, np.r_[human.logits, ai.logits], threshold,
                                                  source="the user's recordings")
        if refused is None:
            point.update(calibration={"a": a, "b": b}, band=band)
        point["calibration_refused"] = refused
    return point


def write_version(model_dir: str | os.PathLike, point: dict[str, Any], *, models_root: str | os.PathLike,
                  language: str | None = None) -> Path:
    """A new store version of the model with this operating point (promoted; `models rollback` undoes it)."""
    model_dir = Path(model_dir)
    meta = read_json(model_dir / CONFIG)
    language = language or meta.get("language")
    if not language:
        raise ModelError(f"{model_dir / CONFIG}: names no language; pass --language")
    meta.update(threshold=point["threshold"], threshold_scale="logit", calibration=point["calibration"],
                operating_point={**point, "fitted_on": "the user's recordings", "base_model": model_dir.name})
    if point.get("band") is not None:
        meta["band"] = point["band"]
    with tempfile.TemporaryDirectory() as tmp:
        for name in MODEL_FILES:
            if (model_dir / name).is_file():
                shutil.copy2(model_dir / name, Path(tmp) / name)
        write_json(Path(tmp) / CONFIG, meta)
        entry = store.register(tmp, root=models_root, language=language, promote=True)
    log.info("calibrated %s on %d human recordings: new version %s", model_dir.name,
             point["humans_called_ai"]["n"], entry.name)
    return entry
