"""Seen- and unseen-engine figures: how the detector does on AI speech from engines training heard and never heard.

A test AI clip is *seen* when its engine produced training AI clips, and *unseen* when its family (or,
without a family column, its engine) is in neither the training nor the validation split. Each group is
scored against all test human clips, with bootstrap intervals, beside the baselines on the same clips;
and at the shipped threshold we report what a user gets: the share of AI clips called AI_GENERATED and
of human clips called HUMAN, per family.
"""
from __future__ import annotations

import logging

import pandas as pd

from voicelib import metrics
from voicelib.evaluation.baselines import NAMES
from voicelib.scoring.decisions import AI, HUMAN, classify

log = logging.getLogger(__name__)


def _family(frame: pd.DataFrame) -> pd.Series:
    """The family of each row (the engine where no family column exists or it is empty)."""
    if "family" not in frame:
        return frame["engine"].astype(str)
    return frame["family"].astype(str).where(frame["family"].astype(str) != "", frame["engine"].astype(str))


def seen_status(test: pd.DataFrame, train: pd.DataFrame, val: pd.DataFrame) -> pd.Series:
    """Per test row: 'human', 'seen' (engine in training AI), 'unseen' (family in neither train nor val) or 'other'."""
    ai = lambda f: f[f["label"] == "ai"]  # noqa: E731
    train_engines = set(ai(train)["engine"].astype(str))
    known_families = set(_family(ai(train))) | set(_family(ai(val)))
    status = pd.Series("other", index=test.index)
    status[test["label"] == "human"] = "human"
    is_ai = test["label"] == "ai"
    status[is_ai & test["engine"].astype(str).isin(train_engines)] = "seen"
    status[is_ai & ~_family(test).isin(known_families)] = "unseen"
    return status


def _group(test: pd.DataFrame, selected: pd.Series, columns: dict[str, str], *, threshold: float, seed: int,
           n_boot: int) -> dict:
    """EER with interval of the selected AI clips against every test human clip, per score column."""
    part = test[selected | (test["label"] == "human")]
    y = (part["label"] == "ai").to_numpy(dtype=int)
    n_ai, n_human = int(y.sum()), int((y == 0).sum())
    out = {"n_ai": n_ai, "n_human": n_human,
           "engines": sorted(map(str, part.loc[part["label"] == "ai", "engine"].unique())),
           "families": sorted(map(str, _family(part[part["label"] == "ai"]).unique()))}
    if n_ai == 0 or n_human == 0:
        out.update(eer=None, note="no such AI clips in the test split")
        return out
    for name, column in columns.items():
        scores = part[column].to_numpy(dtype=float)
        rate = metrics.eer(y, scores)[0]
        if name == "model":
            ci = metrics.bootstrap_ci(y, scores, threshold=0.0, seed=seed, n_boot=n_boot)
            out.update(eer=rate, eer_ci=ci["eer"], roc_auc=metrics.roc_auc(y, scores),
                       ai_called_ai=float((part.loc[part["label"] == "ai", "prob"] >= threshold).mean()))
        else:
            out[f"{name}_eer"] = rate
    return out


def seen_unseen(test: pd.DataFrame, train: pd.DataFrame, val: pd.DataFrame, *, threshold: float, seed: int,
                n_boot: int) -> dict:
    """{'seen_engine_eer': {...}, 'unseen_engine_eer': {...}} for a scored test frame (logit, prob, baselines)."""
    status = seen_status(test, train, val)
    columns = {"model": "logit", **{k: k for k in NAMES if k in test}}
    out = {}
    for name in ("seen", "unseen"):
        out[f"{name}_engine_eer"] = _group(test, status == name, columns, threshold=threshold, seed=seed,
                                           n_boot=n_boot)
    if out["unseen_engine_eer"]["n_ai"] == 0:
        log.warning("the test split holds no AI clips of a family unseen in training and validation: the "
                    "unseen-engine EER cannot be measured (collect more engine families)")
    return out


def operating_point(test: pd.DataFrame, train: pd.DataFrame, val: pd.DataFrame, *, threshold: float,
                    band: float) -> dict:
    """At the shipped threshold: share of AI clips called AI_GENERATED and of humans called HUMAN, per family."""

    calls = pd.Series([classify(p, threshold, band=band)[0] for p in test["prob"]], index=test.index)
    status = seen_status(test, train, val)
    humans = test["label"] == "human"
    out = {"human": {"n": int(humans.sum()), "called_human": float((calls[humans] == HUMAN).mean()),
                     "called_ai": float((calls[humans] == AI).mean())}}
    families = _family(test)
    for family in sorted(set(families[~humans])):
        sel = (~humans) & (families == family)
        kinds = sorted(set(status[sel]))
        out[family] = {"n": int(sel.sum()), "called_ai": float((calls[sel] == AI).mean()),
                       "called_human": float((calls[sel] == HUMAN).mean()), "seen": ", ".join(kinds)}
    for name in ("seen", "unseen"):
        sel = status == name
        if sel.any():
            out[f"all {name}"] = {"n": int(sel.sum()), "called_ai": float((calls[sel] == AI).mean()),
                                  "called_human": float((calls[sel] == HUMAN).mean()), "seen": name}
    return out
