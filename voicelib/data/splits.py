"""Splits that test generalisation: speakers, groups and sentences disjoint, then whole AI families held out."""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from voicelib.data.manifest import LABELS, family_of, normalize_text, to_frame
from voicelib.errors import DataError, LeakageError

SPLITS = ("train", "val", "test")

log = logging.getLogger(__name__)


def _components(df: pd.DataFrame) -> np.ndarray:
    """Union-find over clips sharing a speaker or a group; return a component id per row."""
    parent = list(range(len(df)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    seen: dict[str, int] = {}
    for i, (speaker, group) in enumerate(zip(df["speaker"], df["group"])):
        for key in (f"s:{speaker}" if speaker else "", f"g:{group}" if group else ""):
            if key and key in seen:
                parent[find(i)] = find(seen[key])
            elif key:
                seen[key] = i
    roots = np.array([find(i) for i in range(len(df))])
    return np.unique(roots, return_inverse=True)[1]


def _place(comp_dur: np.ndarray, comp_texts: list[list[str]], order: list[int], targets: np.ndarray,
           affinity: float) -> np.ndarray:
    """Greedily give each component to the split furthest below its target share (per label), with text affinity."""
    totals = np.maximum(comp_dur.sum(axis=0), 1e-9)
    placed = np.zeros((len(SPLITS), len(LABELS)))
    text_split: dict[str, np.ndarray] = {}
    assign = np.zeros(len(comp_dur), dtype=int)
    for c in order:
        mix = comp_dur[c] / max(comp_dur[c].sum(), 1e-9)
        score = ((targets[:, None] * totals - placed) / totals) @ mix
        if comp_texts[c]:  # follow the split already holding this component's sentences: fewer exclusions
            seen = np.array([text_split.get(t, np.zeros(len(SPLITS))) > 0 for t in comp_texts[c]], dtype=float)
            score = score + affinity * seen.mean(axis=0)
        score[targets <= 0] = -np.inf
        assign[c] = int(np.argmax(score))
        placed[assign[c]] += comp_dur[c]
        for t in comp_texts[c]:
            text_split.setdefault(t, np.zeros(len(SPLITS)))[assign[c]] += 1
    return assign


def _fill_empty(assign: np.ndarray, comp_dur: np.ndarray, targets: np.ndarray) -> None:
    """Move a small single-label component into any split (with a target) lacking that label, if one can be spared."""
    for k, label in enumerate(LABELS):
        for s in np.flatnonzero(targets > 0):
            has = (comp_dur[:, k] > 0) & (assign == s)
            if has.any():
                continue
            pure = np.flatnonzero((comp_dur[:, k] > 0) & (comp_dur.sum(axis=1) == comp_dur[:, k]))
            counts = {d: int(((comp_dur[:, k] > 0) & (assign == d)).sum()) for d in range(len(SPLITS))}
            donors = [c for c in pure if counts[assign[c]] >= 2]
            if not donors:
                log.warning("split %s gets no %s clips: too few %s speakers/groups to share out",
                            SPLITS[s], label, label)
                continue
            c = min(donors, key=lambda c: (comp_dur[c, k], c))
            assign[c] = s


def _exclude_shared_sentences(s: pd.DataFrame) -> int:
    """Keep each sentence in one split (the one with most human, then most clips); exclude its other clips."""
    norm = s["text"].map(normalize_text)
    excluded = 0
    for text, idx in s.index.groupby(norm).items():
        active = s.loc[idx, "split"]
        active = active[active != "excluded"]
        if text == "" or active.nunique() < 2:
            continue
        rows = s.loc[active.index]
        human = rows[rows["label"] == "human"]["split"].value_counts()
        total = rows["split"].value_counts()
        winner = max(total.index, key=lambda sp: (human.get(sp, 0), total[sp], -SPLITS.index(sp)))
        lose = active.index[active != winner]
        s.loc[lose, "split"] = "excluded"
        s.loc[lose, "split_reason"] = f"sentence also in {winner} (kept there)"
        excluded += len(lose)
    return excluded


def assign_splits(df: pd.DataFrame, *, seed: int, val_fraction: float = 0.15, test_fraction: float = 0.2,
                  affinity: float = 0.5) -> pd.DataFrame:
    """Add `split` (train/val/test/excluded): disjoint by speaker, group and sentence; deterministic under `seed`.

    Clips sharing a speaker or a group form one component and move together; components are shared out
    so each label reaches the target fractions of duration. A sentence spoken in two splits stays in one
    and its other clips become `excluded` with a `split_reason`.
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"val_fraction {val_fraction} and test_fraction {test_fraction} must be >= 0 and sum below 1")
    base = to_frame(df)
    if base.empty:
        raise DataError("manifest is empty; collect some clips before splitting")
    s = base.sort_values("path", kind="stable")  # row order must not matter
    comp = _components(s.reset_index(drop=True))
    n_comp = comp.max() + 1
    comp_dur = np.zeros((n_comp, len(LABELS)))
    weights = s["duration"].fillna(1.0).clip(lower=0.01).to_numpy()
    for k, label in enumerate(LABELS):
        np.add.at(comp_dur[:, k], comp[s["label"].to_numpy() == label], weights[s["label"].to_numpy() == label])
    comp_texts: list[list[str]] = [[] for _ in range(n_comp)]
    for c, text in zip(comp, s["text"].map(normalize_text)):
        if text:
            comp_texts[c].append(text)
    jitter = np.random.default_rng(seed).uniform(0.5, 1.5, n_comp)
    order = sorted(range(n_comp), key=lambda c: (comp_dur[c, 0] == 0, -comp_dur[c].sum() * jitter[c], c))
    targets = np.array([1.0 - val_fraction - test_fraction, val_fraction, test_fraction])
    assign = _place(comp_dur, comp_texts, order, targets, affinity)
    _fill_empty(assign, comp_dur, targets)
    s = s.copy()
    s["split"] = [SPLITS[a] for a in assign[comp]]
    s["split_reason"] = ""
    excluded = _exclude_shared_sentences(s)
    for label in LABELS:
        if not (s["label"] == label).any():
            log.warning("no %s clips at all: every split is %s-only (Tamil in ../shared/speech has no human speech)",
                        label, "ai" if label == "human" else "human")
    counts = s.groupby(["split", "label"]).size().to_dict()
    log.info("splits (clips): %s; %d clips excluded because their sentence is in another split", counts, excluded)
    return s.loc[base.index]


def check_leakage(df: pd.DataFrame) -> None:
    """Raise LeakageError naming any speaker, group or sentence found in more than one of train/val/test."""
    if "split" not in df.columns:
        raise DataError("manifest has no 'split' column; run manifest.assign_splits first")
    unknown = set(df["split"]) - set(SPLITS) - {"excluded"}
    if unknown:
        raise DataError(f"unknown split value(s) {sorted(unknown)}; use train, val, test or excluded")
    active = df[df["split"].isin(SPLITS)]
    problems = []
    for name, values in (("speaker", active["speaker"].fillna("").astype(str)),
                         ("group", active["group"].fillna("").astype(str)),
                         ("sentence", active["text"].map(normalize_text))):
        table = pd.DataFrame({"value": values, "split": active["split"]})
        table = table[table["value"] != ""]
        spread = table.groupby("value")["split"].agg(lambda x: sorted(set(x)))
        for value, splits in spread[spread.map(len) > 1].items():
            problems.append(f"{name} {value[:60]!r} in {' and '.join(splits)}")
    if problems:
        more = f" (and {len(problems) - 8} more)" if len(problems) > 8 else ""
        raise LeakageError(f"{len(problems)} leak(s) across splits: {'; '.join(problems[:8])}{more}; "
                           "re-split with manifest.assign_splits instead of editing splits by hand")


def _choose_families(frame: pd.DataFrame, fams: pd.Series, split: str, given: list[str] | None, taken: set[str],
                     rng: np.random.Generator, min_clips: int = 1) -> list[str]:
    """The families to hold out for `split`: the given ones, else one drawn by seed among those with clips there.

    Preferred, in order: a TTS family (vocoded copies follow their human sources into every split, so
    holding them out would discard most of them) with at least `min_clips` clips in the split (so the
    held-out family is measured on enough clips).
    """
    if given:
        return list(given)
    counts = fams[(frame["label"] == "ai") & (frame["split"] == split)].value_counts()
    candidates = sorted(set(counts.index) - taken - {"unknown"})
    tts = [c for c in candidates if c != "vocoder"]
    candidates = tts or candidates
    enough = [c for c in candidates if counts[c] >= min_clips]
    candidates = enough or candidates
    return [candidates[int(rng.integers(len(candidates)))]] if candidates else []


def hold_out_families(df: pd.DataFrame, *, seed: int, test_families: list[str] | None = None,
                      val_families: list[str] | None = None, min_ai_clips: int = 10) -> pd.DataFrame:
    """Keep whole AI families out of training: one only in test (unseen by train and val), one only in validation.

    So model selection, early stopping and the threshold reward generalisation, and the test split
    measures AI engines of a family nothing before it heard. Clips of a held-out family that the
    speaker/group/sentence-disjoint split put elsewhere become `excluded`, with the reason.
    """
    out = df.copy()
    fams = family_of(out)
    active_ai = out["split"].isin(SPLITS) & (out["label"] == "ai")
    families = sorted(set(fams[active_ai]))
    if len(families) < 2 and not test_families:
        log.warning("only %d AI engine family (%s): no family can be held out, so the unseen-engine EER cannot be "
                    "measured; collect engines of more families", len(families), ", ".join(families) or "none")
        return out
    rng = np.random.default_rng([seed, 7])
    test = _choose_families(out, fams, "test", test_families, set(), rng, min_ai_clips)
    val = _choose_families(out, fams, "val", val_families, set(test), rng, min_ai_clips) \
        if len(families) >= 3 or val_families else []
    unknown = sorted(set(test + val) - set(families))
    if unknown:
        raise ValueError(f"held-out families {unknown} have no AI clips; choose from {', '.join(families)}")
    held = {}
    for family, kept_in, why in [(f, "test", "held out for the test (unseen by training and validation)")
                                 for f in test] + [(f, "val", "held out for validation (unseen by training)")
                                                   for f in val]:
        move = active_ai & (fams == family) & (out["split"] != kept_in) & (out["split"] != "excluded")
        trial = out["split"].where(~move, "excluded")
        lacking = [s for s in SPLITS if not ((trial == s) & (out["label"] == "ai")).any()]
        if lacking and (test_families or val_families):
            raise ValueError(f"holding out family {family} would leave the {' and '.join(lacking)} split(s) without "
                             "AI clips; choose another family or collect more engines")
        if lacking:
            log.warning("family %s not held out: the %s split would keep no AI clips", family, " and ".join(lacking))
            continue
        out.loc[move, "split"] = "excluded"
        out.loc[move, "split_reason"] = f"family {family} {why}"
        held[family] = kept_in
    test = [f for f in test if held.get(f) == "test"]
    val = [f for f in val if held.get(f) == "val"]
    for split in ("val", "test"):
        n_ai = int(((out["split"] == split) & (out["label"] == "ai")).sum())
        if n_ai < min_ai_clips:
            log.warning("the %s split has only %d AI clips (< %d): its EER and the threshold are unreliable; "
                        "collect more AI speech", split, n_ai, min_ai_clips)
    log.info("families held out: test %s, validation %s; training keeps %s", test or "none", val or "none",
             sorted(set(fams[(out["split"] == "train") & (out["label"] == "ai")])))
    return out
