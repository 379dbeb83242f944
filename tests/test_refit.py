"""The final fit: the shipped model trains on every clip, and its operating point comes only from held-out scores."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from voicelib import metrics
from voicelib.audio.augment import AugmentConfig
from voicelib.errors import ModelError
from voicelib.evaluation import evaluate
from voicelib.files import RunDir, write_json
from voicelib.model import store
from voicelib.report import card
from voicelib.scoring.load import load_detector
from voicelib.stages import checks, final_fit
from voicelib.training import fit as training

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, split_manifest, tiny_config, tiny_budget):
    """A run directory as stages 01-04 leave it: manifest, augment.json, the evaluated model, test/val scores."""
    run = tmp_path_factory.mktemp("run")
    split = split_manifest(tmp_path_factory.mktemp("audio"))
    split.to_csv(run / "manifest.csv", index=False)
    write_json(run / "augment" / "augment.json", {"config": AugmentConfig.none().to_dict(), "seed": 0})
    fit = training.fit(split, tiny_budget, out_dir=run / "model", model_config=tiny_config(cmvn=False),
                       augment_config=AugmentConfig.none(), device="cpu", progress=False, cache_dir=run / "cache")
    write_json(run / "train.json", {"store_entry": "models/english/evaluated", "best_epoch": fit.best_epoch})
    evaluate.evaluate_run(run / "model", split, out_dir=run, baselines=False, robust=False, n_boot=20)
    return run


def test_the_operating_point_comes_from_the_evaluated_models_held_out_scores(run_dir):
    point = final_fit.heldout_operating_point(run_dir)
    scores = pd.concat([pd.read_csv(run_dir / "val_scores.csv"), pd.read_csv(run_dir / "scores.csv")])
    y = (scores["label"] == "ai").astype(int)
    rate, threshold = metrics.eer(y, scores["ai_logit"])
    assert point["threshold"] == pytest.approx(threshold) and point["heldout_eer"] == pytest.approx(rate)
    assert (point["n_ai"], point["n_human"]) == (20, 10) and point["from"] == ["val_scores.csv", "scores.csv"]
    assert point["calibration_refused"] is None
    assert (point["calibration"]["a"], point["calibration"]["b"]) == pytest.approx(
        metrics.fit_platt(y, scores["ai_logit"]))


def test_too_few_held_out_clips_are_not_calibrated_and_one_class_is_refused(tmp_path):
    pd.DataFrame({"label": ["human"] * 3 + ["ai"] * 3, "ai_logit": [-2, -1, 0.5, 0, 1, 2]}).to_csv(
        tmp_path / "scores.csv")
    point = final_fit.heldout_operating_point(tmp_path)
    assert point["calibration"] == {"a": 1.0, "b": 0.0} and "not calibrated" in point["calibration_refused"]
    pd.DataFrame({"label": ["ai", "ai"], "ai_logit": [0, 1]}).to_csv(tmp_path / "scores.csv")
    with pytest.raises(ValueError, match="both classes"):
        final_fit.heldout_operating_point(tmp_path)
    with pytest.raises(FileNotFoundError, match="run the evaluation stage"):
        final_fit.heldout_operating_point(tmp_path / "nothing")


def test_the_final_model_trains_on_every_clip_and_ships_the_held_out_threshold(run_dir, tmp_path):
    split = pd.read_csv(run_dir / "manifest.csv")
    info = final_fit.ship(RunDir(run_dir), split, enabled=True, models_root=tmp_path / "models", language="english",
                          promote=True, data_root=run_dir)
    point = final_fit.heldout_operating_point(run_dir)
    assert info["shipped"] == "final" and info["n_clips"] == len(split) == 60
    entry = info["store_entry"]
    assert store.list_models(tmp_path / "models", "english") == [Path(entry).name]
    assert store.current("english", root=tmp_path / "models").name == Path(entry).name
    config = json.loads((run_dir / "final_model" / "config.json").read_text())
    assert config["threshold"] == point["threshold"] and config["calibration"] == point["calibration"]
    assert config["train_config"]["select_on"] == "last"
    evaluated = json.loads((run_dir / "model" / "config.json").read_text())
    assert config["train_config"]["epochs"] == max(evaluated["best_epoch"], 1)
    assert config["data"]["train_ai"]["clips"] == 40 and config["data"]["train_human"]["clips"] == 20
    assert not any(k.startswith("val_") for k in config["data"])
    assert config["final_fit"]["evaluated_model"] == f"{run_dir.name}/model"  # a name: no path of this machine ships
    assert str(run_dir.parent) not in json.dumps(config["final_fit"])
    final_metrics = json.loads((run_dir / "final_model" / "metrics.json").read_text())
    assert final_metrics["final_fit"] is True and "val_eer" not in final_metrics
    det = load_detector(entry, backend="torch")
    assert det.threshold == pytest.approx(float(metrics.apply_platt(point["threshold"], **point["calibration"])))
    assert checks.final_model_consistent(RunDir(run_dir)).startswith(Path(entry).name)
    which = card.which_model_table(run_dir)
    assert list(which["model"]) == ["evaluated", "final (shipped)"] and "all 60 clips" in which["trained on"].iloc[1]


def test_a_tampered_final_model_fails_the_check(run_dir, tmp_path):
    final = json.loads((run_dir / "final.json").read_text())
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("model.safetensors", "config.json"):
        (bad / name).write_bytes((Path(final["store_entry"]) / name).read_bytes())
    config = json.loads((bad / "config.json").read_text())
    config["threshold"] += 1.0
    (bad / "config.json").write_text(json.dumps(config))
    write_json(tmp_path / "final.json", {**final, "store_entry": str(bad)})
    with pytest.raises(checks.CheckFailed, match="held-out operating point"):
        checks.final_model_consistent(RunDir(tmp_path))


def test_without_the_final_fit_the_evaluated_model_is_shipped(run_dir, tmp_path):
    (tmp_path / "train.json").write_text((run_dir / "train.json").read_text())
    info = final_fit.ship(RunDir(tmp_path), pd.DataFrame(), enabled=False, models_root=tmp_path / "models",
                          language="english", promote=False, data_root=tmp_path)
    assert info["shipped"] == "evaluated" and info["store_entry"] == "models/english/evaluated"
    assert json.loads((tmp_path / "final.json").read_text())["enabled"] is False
    assert not (tmp_path / "models").exists() and len(card.which_model_table(tmp_path)) == 1
    assert checks.final_model_consistent(RunDir(tmp_path)).startswith("final_fit=False")


def test_the_shipping_stage_is_where_the_evaluated_model_is_promoted(run_dir, tmp_path):
    models = tmp_path / "models"
    entry = store.register(run_dir / "model", root=models, language="english", promote=False)
    with pytest.raises(ModelError):
        store.current("english", root=models)  # registered by training, not promoted before evaluation
    write_json(tmp_path / "train.json", {"store_entry": str(entry)})
    info = final_fit.ship(RunDir(tmp_path), pd.DataFrame(), enabled=False, models_root=models, language="english",
                          promote=True, data_root=tmp_path)
    assert info["promoted"] is True and store.current("english", root=models) == entry
