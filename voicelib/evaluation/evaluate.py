"""Honest evaluation on the test split: metrics with intervals, breakdowns, robustness, baselines, calibration.

Clips are scored exactly as detection scores files (Detector.score_arrays: chunks, mean logit, Platt).
The operating threshold and the calibration come from the model directory (fitted on validation by
train.fit); nothing is tuned on test. Ranking metrics (EER, ROC-AUC) use the mean AI logit, decisions
use the calibrated probability against the calibrated threshold; the two agree because Platt is monotonic.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from voicelib import metrics
from voicelib.data.manifest import family_of, label_array
from voicelib.evaluation import unseen
from voicelib.evaluation.baselines import NAMES, run_baselines
from voicelib.evaluation.clips import labelled_waves, score_split
from voicelib.evaluation.robustness import CONDITIONS, robustness
from voicelib.files import RunDir, atomic_path, write_json
from voicelib.metrics import compute_metrics, eer  # noqa: F401 - eer is part of this module's API
from voicelib.scoring.decisions import classify
from voicelib.scoring.load import load_detector

log = logging.getLogger(__name__)


BREAKDOWNS = ("language", "family", "engine", "source")


def _cell(sub: pd.DataFrame, other: pd.DataFrame | None, *, threshold: float, score: str) -> dict:
    """Metrics of one breakdown cell, against the other class's clips when the cell lacks it."""
    n_ai = int(sub["y"].sum())
    cell = {"n": len(sub), "n_human": len(sub) - n_ai, "n_ai": n_ai,
            "accuracy": float(((sub["prob"] >= threshold).astype(int) == sub["y"]).mean())}
    both = sub if 0 < n_ai < len(sub) else None
    compared = "within cell"
    if both is None and other is not None and len(other):
        both = pd.concat([sub, other])
        compared = f"this cell's {'AI' if n_ai else 'human'} clips vs all {'human' if n_ai else 'AI'} test clips"
    if both is None:
        cell.update(eer=None, roc_auc=None, note=f"no {'human' if n_ai else 'AI'} clips in this cell; EER undefined")
        return cell
    cell.update(eer=metrics.eer(both["y"], both[score])[0], roc_auc=metrics.roc_auc(both["y"], both[score]),
                compared=compared)
    return cell


def breakdown(frame: pd.DataFrame, column: str, *, threshold: float, pool_other_class: bool,
              score: str = "logit") -> dict:
    """Per-value metrics of `column` (frame has y, prob, `score`); accuracy uses `threshold` on prob."""
    out = {}
    for value, sub in frame.groupby(column, sort=True):
        other = None
        if pool_other_class:
            lacking = 1 if sub["y"].sum() == 0 else 0 if sub["y"].all() else None
            other = frame[frame["y"] == lacking] if lacking is not None else None
        out[str(value)] = _cell(sub, other, threshold=threshold, score=score)
    return out


def inconclusive_summary(labels, probs, *, threshold: float, band: float) -> dict:
    """Share of clips within `band` of the threshold and the accuracy of the decided rest."""
    labels, probs = np.asarray(labels).astype(int), np.asarray(probs, dtype=float)
    decided = np.abs(probs - threshold) >= band
    acc = float(((probs[decided] >= threshold).astype(int) == labels[decided]).mean()) if decided.any() else None
    return {"band": band, "low": max(threshold - band, 0.0), "high": min(threshold + band, 1.0),
            "share_inconclusive": float(1 - decided.mean()), "n_inconclusive": int((~decided).sum()),
            "accuracy_outside_band": acc, "n_decided": int(decided.sum())}


def calibration_summary(a: float, b: float, *, val: tuple | None, test: tuple, method: str = "platt") -> dict:
    """ECE of the raw sigmoid and of the Platt probabilities, on validation (when scored) and test."""
    out = {"method": method, "a": a, "b": b, "fitted_on": "validation"}
    for name, part in (("validation", val), ("test", test)):
        if part is None:
            continue
        y, logit = part
        out[f"ece_{name}_before"] = metrics.expected_calibration_error(y, 1 / (1 + np.exp(-np.asarray(logit))))
        out[f"ece_{name}_after"] = metrics.expected_calibration_error(y, metrics.apply_platt(logit, a, b))
    return out



def _bootstrap(frame: pd.DataFrame, *, threshold_logit: float, seed: int, n_boot: int) -> dict:
    """Speaker-level bootstrap when each class has >= 5 test speakers, clip-level otherwise (said so)."""
    per_class = frame.groupby("y")["speaker"].nunique() if "speaker" in frame else pd.Series(dtype=int)
    by_speaker = len(per_class) == 2 and per_class.min() >= 5
    ci = metrics.bootstrap_ci(frame["y"], frame["logit"], threshold=threshold_logit, seed=seed, n_boot=n_boot,
                              clusters=frame["speaker"].to_numpy() if by_speaker else None)
    ci["resampling"] = ("speakers within each class" if by_speaker else
                        "clips within each class (fewer than 5 test speakers in a class; intervals are optimistic)")
    ci["n_boot"], ci["level"] = n_boot, 0.95
    return ci


def _headline(det, test: pd.DataFrame, *, seed: int, n_boot: int) -> dict:
    """Top-level test metrics at the model's validation threshold, with bootstrap intervals and breakdowns."""
    threshold_logit = float(det.meta.get("threshold", 0.0))
    result = compute_metrics(test["y"], test["logit"], threshold=threshold_logit)
    result.update(metrics.binary_metrics(test["y"], test["prob"], det.threshold))
    result.update(threshold=det.threshold, threshold_logit=threshold_logit, n_test=len(test))
    result["ci"] = _bootstrap(test, threshold_logit=threshold_logit, seed=seed, n_boot=n_boot)
    result["breakdowns"] = {c: breakdown(test, c, threshold=det.threshold, pool_other_class=c != "language")
                            for c in BREAKDOWNS if c in test}
    return result


def evaluate_run(model_dir: str | os.PathLike, manifest: pd.DataFrame, *, out_dir: str | os.PathLike,
                 device: str = "cpu", seed: int = 0, band: float | None = None, chunk_duration: float = 3.0,
                 overlap: float = 0.5, baselines: bool = True, robust: bool = True, n_boot: int = 1000,
                 gmm_components: int = 32, conditions: Sequence[str] = tuple(CONDITIONS)) -> dict:
    """Evaluate a model on the test split; write metrics.json, scores.csv and val_scores.csv under out_dir.

    Figures are drawn from those files by voicelib.report.plots (the report and the notebook do it).
    """
    out_dir = Path(out_dir)
    run = RunDir(out_dir)
    parts = {s: manifest[manifest["split"] == s].reset_index(drop=True) for s in ("train", "val", "test")}
    if len(parts["test"]) == 0 or len(set(label_array(parts["test"]))) < 2:
        raise ValueError("evaluate_run: the test split needs human and AI clips; check manifest.assign_splits")
    det = load_detector(model_dir, device=device, band=band)
    band = det.band  # the model's own (sized on validation) unless one was given
    kw = {"chunk_duration": chunk_duration, "overlap": overlap}
    test, test_waves, n_failed = score_split(det, parts["test"], kw)
    result = _headline(det, test, seed=seed, n_boot=n_boot)
    result.update(n_test_failed=n_failed, model_dir=_relative(model_dir, out_dir), seed=seed,
                  scoring={**kw, "clip_score": "Platt(mean chunk logit)", "band": band})
    val = _validation(det, parts["val"], kw, band=band, path=run.val_scores)
    if val is not None:
        rate, thr = metrics.eer(*val)
        result["val_check"] = {"eer": rate, "eer_threshold_logit": thr,
                               "note": "validation re-scored as detection does"}
    result["calibration"] = calibration_summary(*det.calibration, val=val, test=(test["y"], test["logit"]))
    result["inconclusive"] = inconclusive_summary(test["y"], test["prob"], threshold=det.threshold, band=band)
    result["robustness"], result["baselines"], result["shortcut_warning"] = {}, {}, None
    if robust:
        result["robustness"], rob = robustness(det, test_waves, test["y"], seed=seed, conditions=conditions, **kw)
        test = test.assign(**{f"robust_{k}": v for k, v in rob.items()})
    if baselines:
        train, train_waves, _ = labelled_waves(parts["train"], det.sample_rate)
        seen = lambda waves: [det.prepared(w) for w in waves]  # noqa: E731 - the baselines see what the model sees
        result["baselines"], base = run_baselines((seen(train_waves), train), (seen(test_waves), test["y"].to_numpy()),
                                                  seed=seed, sr=det.sample_rate, gmm_components=gmm_components)
        result["shortcut_warning"] = result["baselines"]["shortcut_probe"]["warning"]
        test = test.assign(**base)
        if result["shortcut_warning"]:
            log.warning(result["shortcut_warning"])
    result.update(unseen.seen_unseen(test, parts["train"], parts["val"], threshold=det.threshold, seed=seed,
                                     n_boot=n_boot))
    result["per_language"] = _per_language(test, parts, threshold=det.threshold, seed=seed, n_boot=n_boot)
    result["operating_point"] = unseen.operating_point(test, parts["train"], parts["val"], threshold=det.threshold,
                                                       band=band)
    test["classification"] = [det_class(p, det.threshold, band) for p in test["prob"]]
    test["seen"] = unseen.seen_status(test, parts["train"], parts["val"])
    if "predicted_family" in test:
        result["attribution"] = attribution(test, det.families)
    _write_scores(test, run.scores)
    write_json(run.metrics, _jsonable(result))
    _log_headline(result, n_test=len(test))
    return result


def _per_language(test: pd.DataFrame, parts: dict, *, threshold: float, seed: int, n_boot: int) -> dict:
    """Seen- and unseen-engine EER within each language of a multilingual test split (never only pooled)."""
    languages = sorted(set(test["language"].astype(str)))
    if len(languages) < 2:
        return {}
    out = {}
    for name in languages:
        part = test[test["language"].astype(str) == name]
        if part["y"].nunique() < 2:
            out[name] = {"note": f"the test split holds only {'AI' if part['y'].all() else 'human'} {name} clips"}
            continue
        same = {s: frame[frame["language"].astype(str) == name] for s, frame in parts.items()}
        out[name] = {"eer": metrics.eer(part["y"], part["logit"])[0], "n_test": len(part),
                     **unseen.seen_unseen(part, same["train"], same["val"], threshold=threshold, seed=seed,
                                          n_boot=n_boot)}
    return out


def _validation(det, part: pd.DataFrame, kw: dict, *, band: float, path: Path) -> tuple | None:
    """Validation re-scored as detection scores files (written to `path`); (labels, logits) or None."""
    if not len(part):
        return None
    frame, _, _ = score_split(det, part, kw)
    if frame["y"].nunique() < 2:
        return None
    frame["classification"] = [det_class(p, det.threshold, band) for p in frame["prob"]]
    _write_scores(frame, path)
    return frame["y"].to_numpy(), frame["logit"].to_numpy()


def _log_headline(result: dict, *, n_test: int) -> None:
    """One log line for the test EER, one for each of the seen- and unseen-engine groups."""
    log.info("test EER %.3f, AUC %.3f on %d clips", result["eer"], result["roc_auc"], n_test)
    for name in ("seen", "unseen"):
        group = result[f"{name}_engine_eer"]
        if group.get("eer") is not None:
            log.info("%s-engine EER %.3f [%.3f-%.3f] on %d AI clips (%s) vs %d human", name, group["eer"],
                     *group["eer_ci"], group["n_ai"], ", ".join(group["engines"]), group["n_human"])


def attribution(test: pd.DataFrame, families: Sequence[str]) -> dict:
    """Family-head accuracy on the test AI clips whose family the head knows, and the counts of true vs predicted."""
    ai = test[test["y"] == 1]
    true = family_of(ai)
    known = true.isin(list(families))
    counts = pd.crosstab(true, ai["predicted_family"]).to_dict(orient="index")
    return {"families": list(families), "n_ai": len(ai), "n_known_family": int(known.sum()),
            "accuracy_known_families": (float((ai["predicted_family"][known] == true[known]).mean())
                                        if known.any() else None),
            "unknown_families": sorted(set(true[~known])), "counts": {k: {p: int(n) for p, n in v.items()}
                                                                       for k, v in counts.items()},
            "note": "predicted family of each test AI clip (argmax of familyDistribution); families the head was "
                    "never trained on can only be matched to the closest known one"}


def det_class(prob: float, threshold: float, band: float) -> str:
    """Classification of one probability, as detection reports it."""
    return classify(prob, threshold, band=band)[0]


def _relative(path: str | os.PathLike, base: Path) -> str:
    """`path` relative to `base` when it lies inside it (so a run's metrics.json names no machine path)."""
    resolved, base = Path(path).resolve(), Path(base).resolve()
    return resolved.relative_to(base).as_posix() if resolved.is_relative_to(base) else str(resolved)


def _write_scores(frame: pd.DataFrame, path: Path) -> None:
    cols = [c for c in ("path", "label", "language", "family", "engine", "source", "speaker", "logit", "prob",
                        "classification", "seen", "predicted_family")
            if c in frame] + [c for c in frame if c.startswith(("robust_", *NAMES))]
    with atomic_path(path) as tmp:
        frame[cols].rename(columns={"prob": "ai_score", "logit": "ai_logit"}).to_csv(tmp, index=False)


def _jsonable(obj):
    """Replace numpy scalars and NaN with plain JSON values."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return None if not np.isfinite(obj) else float(obj)
    return obj


HEADLINE = ("eer", "roc_auc", "accuracy", "threshold", "n_test")


def headline_table(result: dict) -> pd.DataFrame:
    """The headline figures of a metrics dict with their 95 % intervals, one row each."""
    ci = result.get("ci", {})
    return pd.DataFrame([{"metric": k, "value": result[k], "95% interval": ci.get(k)} for k in HEADLINE if k in result])
