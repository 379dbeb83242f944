"""Leave one family out: the folds hold a family out of training, score it against the test humans, and say so."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from voicelib import metrics
from voicelib.audio.augment import AugmentConfig
from voicelib.evaluation import lofo
from voicelib.files import RunDir
from voicelib.report.sections import lofo_table
from voicelib.stages import evaluate as evaluate_stage
from voicelib.training.config import TrainConfig
from voicelib.training.fit import fit

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def split(tmp_path_factory, split_manifest) -> pd.DataFrame:
    return split_manifest(tmp_path_factory.mktemp("lofo_audio"))


@pytest.fixture(scope="module")
def tiny(tiny_config):
    return tiny_config(cmvn=False)


def test_a_fold_keeps_the_family_out_of_training_and_scores_it_against_the_test_humans(split):
    trainval, test = lofo.fold(split, "low")
    assert not ((trainval["family"] == "low") & (trainval["label"] == "ai")).any()
    assert set(trainval["split"]) == {"train", "val"} and set(trainval[trainval["label"] == "ai"]["family"]) == {"high"}
    moved = trainval[trainval["hash"].isin(split[split["split"] == "test"]["hash"])]
    assert len(moved) == 5 and set(moved["family"]) == {"high"} and set(moved["split"]) == {"val"}  # other AI: val
    ai = test[test["label"] == "ai"]
    assert set(ai["family"]) == {"low"} and len(ai) == 20  # every clip of the family: it is out of training altogether
    assert set(ai["split"]) == {"train", "val", "test"}
    assert set(test[test["label"] == "human"]["split"]) == {"test"} and (test["label"] == "human").sum() == 5


def test_only_families_with_enough_clips_and_another_family_to_train_on_are_folds(split, split_manifest, tmp_path):
    assert lofo.held_out_families(split) == ["high", "low"]
    assert lofo.held_out_families(split, min_clips=21) == []
    few = split[~((split["family"] == "high") & (split["hash"].str[-4:].astype(int) >= 4))]
    assert lofo.held_out_families(few) == ["low"]  # 'high' keeps 4 clips (test, 2 train, val)
    three = split_manifest(tmp_path, families=("low", "mid", "high"))
    held_out = three[~((three["family"] == "low") & (three["split"] != "test"))  # 'low' only in test, 'mid' only in
                     & ~((three["family"] == "mid") & (three["split"] != "val"))]  # val: as family-held-out splits
    assert lofo.held_out_families(held_out) == ["low", "mid"]  # without 'high' no AI clip is left to train on
    trainval, test = lofo.fold(held_out, "mid")
    assert set(trainval[(trainval["split"] == "val") & (trainval["label"] == "ai")]["family"]) == {"low", "high"}


def test_run_writes_every_fold_with_pooled_figures_and_lfcc_gmm(split, tmp_path, tiny, tiny_budget):
    result = lofo.run(split, train_config=tiny_budget, model_config=tiny, augment_config=AugmentConfig.none(),
                      out_dir=tmp_path, cache_dir=tmp_path / "cache", n_boot=50, gmm_components=2)
    assert result["families"] == ["high", "low"] and result["complete"] is True
    for row in result["folds"]:
        assert row["family"] not in row["train_families"] and row["train_families"] == sorted({"high", "low"}
                                                                                              - {row["family"]})
        assert (row["n_ai"], row["n_human"]) == (20, 5)
        assert 0 <= row["eer_ci"][0] <= row["eer"] <= row["eer_ci"][1] <= 1 and 0 <= row["lfcc_gmm_eer"] <= 1
        assert 0 <= row["fused_eer"] <= 1  # network + LFCC-GMM, the LR fitted on the fold's validation clips
    assert not (tmp_path / "lofo" / "low" / "model").exists()  # fold models are not kept
    scores = pd.read_csv(tmp_path / "lofo_scores.csv")
    assert len(scores) == 50 and set(scores["family"]) == {"high", "low"}
    assert result["pooled_eer"] == pytest.approx(metrics.eer(scores["y"], scores["logit"])[0])
    assert result["mean_eer"] == pytest.approx(np.mean([r["eer"] for r in result["folds"]]))
    assert json.loads((tmp_path / "lofo.json").read_text())["pooled_eer"] == pytest.approx(result["pooled_eer"])
    table = lofo_table(result)
    assert list(table["held out"]) == ["high", "low", "mean over families", "pooled"]
    assert table["LFCC-GMM EER %"].notna().all() and table["fused EER %"].notna().all()
    assert result["fused_pooled_eer"] == pytest.approx(metrics.eer(scores["y"], scores["fused"])[0])
    assert np.isfinite(scores[["lfcc_gmm", "gmm_novelty"]].to_numpy()).all()
    val = pd.read_csv(tmp_path / "lofo_val_scores.csv")  # what each fold's fusion and threshold may be fitted on
    for family, part in val.groupby("family"):
        trainval, _ = lofo.fold(split, family)
        assert len(part) == (trainval["split"] == "val").sum() and family not in set(part.loc[part["y"] == 1,
                                                                                              "clip_family"])
        assert set(part["path"]).isdisjoint(scores.loc[scores["family"] == family, "path"])
    assert val[["logit", "lfcc_gmm", "gmm_novelty"]].notna().all().all()


def test_the_stage_is_off_by_default_and_refuses_data_without_folds(split, tmp_path, tiny, tiny_budget):
    off = evaluate_stage.leave_one_family_out(RunDir(tmp_path), split, enabled=False, training={}, data_root=tmp_path,
                                              device="cpu", seed=0, gmm_components=2)
    assert off.empty and not RunDir(tmp_path).lofo.exists()
    one_family = split[split["family"] != "high"]
    with pytest.raises(ValueError, match="no AI family has 5\\+ clips with another family left to train on"):
        lofo.run(one_family, train_config=tiny_budget, model_config=tiny, augment_config=AugmentConfig.none(),
                 out_dir=tmp_path)


def test_recipe_reads_the_trained_models_configs_with_changes(split, tmp_path, tiny, tiny_budget):
    result = fit(split, tiny_budget, out_dir=tmp_path / "m", model_config=tiny, augment_config=AugmentConfig.none(),
                       device="cpu", progress=False, cache_dir=tmp_path / "cache")
    train_config, model_config = lofo.recipe(result.model_dir, epochs=1)
    assert train_config == TrainConfig.from_dict({**tiny_budget.to_dict(), "epochs": 1})
    assert model_config.width == 8 and model_config.features == tiny.features
    with pytest.raises(ValueError, match="epochs"):
        lofo.recipe(result.model_dir, epochs=0)
