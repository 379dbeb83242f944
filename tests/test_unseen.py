"""Seen/unseen-engine figures on hand-made scores with known answers."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from voicelib.evaluation import unseen


def _frame(rows):
    return pd.DataFrame(rows, columns=["label", "engine", "family", "logit", "prob", "speaker"])


@pytest.fixture
def parts():
    train = _frame([("human", "human", "human", 0, 0, "h1"), ("ai", "espeak-ng", "formant", 0, 0, "e"),
                    ("ai", "world-dio", "vocoder", 0, 0, "h1")])
    val = _frame([("human", "human", "human", 0, 0, "h2"), ("ai", "kokoro", "neural", 0, 0, "k1")])
    # test: 4 humans (logits -2..-0.5), espeak seen and perfectly separated, hibari (neural: seen in val only),
    # festival (diphone: unseen anywhere), half of whose clips score below the humans
    test = _frame([("human", "human", "human", -2.0, 0.1, "h3"), ("human", "human", "human", -1.5, 0.15, "h3"),
                   ("human", "human", "human", -1.0, 0.2, "h4"), ("human", "human", "human", -0.5, 0.3, "h4"),
                   ("ai", "espeak-ng", "formant", 2.0, 0.9, "e2"), ("ai", "espeak-ng", "formant", 3.0, 0.95, "e2"),
                   ("ai", "hibari", "neural", 1.0, 0.7, "hb"),
                   ("ai", "festival-nsk", "diphone", 1.0, 0.8, "f"),
                   ("ai", "festival-nsk", "diphone", -3.0, 0.05, "f")])
    return train, val, test


def test_seen_status_uses_engines_for_seen_and_families_for_unseen(parts):
    train, val, test = parts
    status = unseen.seen_status(test, train, val)
    assert list(status) == ["human"] * 4 + ["seen", "seen", "other", "unseen", "unseen"]


def test_seen_and_unseen_eer_against_all_test_humans(parts):
    train, val, test = parts
    out = unseen.seen_unseen(test, train, val, threshold=0.5, seed=0, n_boot=50)
    seen, new = out["seen_engine_eer"], out["unseen_engine_eer"]
    assert seen["eer"] == 0.0 and seen["n_ai"] == 2 and seen["n_human"] == 4 and seen["engines"] == ["espeak-ng"]
    assert new["families"] == ["diphone"] and new["n_ai"] == 2 and new["ai_called_ai"] == 0.5
    assert new["eer"] == pytest.approx(0.5) and new["eer_ci"][0] <= new["eer"] <= new["eer_ci"][1]


def test_unseen_is_not_measurable_without_a_held_out_family(parts):
    train, val, test = parts
    test = test[test["family"] != "diphone"]
    assert unseen.seen_unseen(test, train, val, threshold=0.5, seed=0, n_boot=10)["unseen_engine_eer"]["eer"] is None


def test_operating_point_per_family(parts):
    train, val, test = parts
    out = unseen.operating_point(test, train, val, threshold=0.5, band=0.0)
    assert out["human"] == {"n": 4, "called_human": 1.0, "called_ai": 0.0}
    assert out["formant"]["called_ai"] == 1.0 and out["diphone"]["called_ai"] == 0.5
    assert out["all unseen"]["n"] == 2 and np.isclose(out["all seen"]["called_ai"], 1.0)
