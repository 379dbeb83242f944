"""Cross-fitting: the shipped ensemble's operating point comes from its own members' out-of-fold scores."""
from __future__ import annotations

import json

import numpy as np
import pytest

from voicelib import metrics
from voicelib.audio.augment import AugmentConfig
from voicelib.data.manifest import family_of
from voicelib.errors import DataError
from voicelib.files import RunDir, write_json
from voicelib.model import store
from voicelib.scoring.load import load_detector
from voicelib.stages import crossfit
from voicelib.training import fit as training

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory, split_manifest, tiny_config, tiny_budget):
    """A run directory as stages 01-03 leave it: manifest, augment.json and the evaluated model."""
    root = tmp_path_factory.mktemp("run")
    split = split_manifest(tmp_path_factory.mktemp("audio"))
    split.to_csv(root / "manifest.csv", index=False)
    write_json(root / "augment" / "augment.json", {"config": AugmentConfig.none().to_dict(), "seed": 0})
    training.fit(split, tiny_budget, out_dir=root / "model", model_config=tiny_config(cmvn=False),
                 augment_config=AugmentConfig.none(), device="cpu", progress=False, cache_dir=root / "cache")
    return RunDir(root), split


def test_folds_keep_speakers_and_families_apart(run):
    _, split = run
    folds = crossfit.assign_folds(split, 2, seed=0)
    human = split["label"] == "human"
    for column, rows in (("speaker", human), ("family", ~human)):
        keys = split.loc[rows, "speaker"] if column == "speaker" else family_of(split[rows])
        assert all(len(set(folds[rows.to_numpy()][keys.to_numpy() == k])) == 1 for k in set(keys))
    assert set(folds) == {0, 1}
    with pytest.raises(DataError, match="needs 3 human speakers and 3 AI families"):
        crossfit.assign_folds(split, 3, seed=0)


def test_the_ensemble_ships_the_threshold_of_its_own_out_of_fold_scores(run):
    run_dir, split = run
    out = crossfit.crossfit(split, run_dir.root, k=2, cache_dir=run_dir.root / "cache", seed=0)
    spec = json.loads((out / "ensemble.json").read_text())
    point = spec["operating_point"]
    assert len(spec["members"]) == 2 and point["n_clips"] == len(split) and spec["fitted_on"] == "out-of-fold"
    frame = split.reset_index(drop=True)
    folds = crossfit.assign_folds(frame, 2, seed=0)
    oof = np.full(len(frame), np.nan)
    for k, member in enumerate(spec["members"]):
        det = load_detector(out / member["path"], backend="torch")
        assert det.meta["calibration"] == point["calibration"]  # every member on one calibrated scale
        held = folds == k
        oof[held] = [r["aiLogit"] for r in det.score_files(list(frame.loc[held, "path"]), chunk_duration=1.0)]
    y = (frame["label"] == "ai").to_numpy(int)
    rate, threshold = metrics.eer(y, oof)
    assert point["threshold"] == pytest.approx(threshold) and point["oof_eer"] == pytest.approx(rate)
    shipped = load_detector(out, backend="torch")
    result = shipped.score_file(frame["path"].iloc[0], chunk_duration=1.0)
    assert 0.0 <= result["aiScore"] <= 1.0 and set(result["members"]) == {"fold0", "fold1"}


def test_the_cross_fitted_ensemble_is_registered_whole_and_detects_from_the_store(run, tmp_path):
    run_dir, split = run
    out = run_dir.final_model
    if not (out / "ensemble.json").is_file():
        crossfit.crossfit(split, run_dir.root, k=2, cache_dir=run_dir.root / "cache", seed=0)
    entry = store.register(out, root=tmp_path / "models", language="english")
    det = load_detector(language="english", models_root=tmp_path / "models", backend="torch")
    spec = json.loads((entry / "ensemble.json").read_text())
    assert det.band == spec["band"] and not (entry / "members" / "fold0" / "checkpoints").exists()
    assert 0.0 <= det.score_file(split["path"].iloc[0], chunk_duration=1.0)["aiScore"] <= 1.0
