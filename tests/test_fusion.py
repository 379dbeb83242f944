"""Fusion and ensembles: the LR is fitted on validation only, fused directories load as one model, the CLI too."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from voicelib import metrics
from voicelib.errors import DataError, ModelError
from voicelib.evaluation.fusion import build, compare, fit_lr
from voicelib.model.gmm import LfccGmm
from voicelib.scoring import fusion
from voicelib.scoring.load import load_detector

SR = 16000
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def hand_made_scores(n: int = 40, seed: int = 0) -> pd.DataFrame:
    """Member `a` separates the classes on val and test but not on train; member `b` only on train."""
    rng = np.random.default_rng(seed)
    rows = []
    for split in ("train", "val", "test"):
        y = np.repeat([0, 1], n)
        clean, noise = 3.0 * y + rng.normal(0, 1, 2 * n), rng.normal(0, 1, 2 * n)
        a, b = (noise, 3.0 * y + rng.normal(0, 1, 2 * n)) if split == "train" else (clean, rng.normal(0, 1, 2 * n))
        rows.append(pd.DataFrame({"split": split, "y": y, "a": a, "b": b}))
    return pd.concat(rows, ignore_index=True)


def test_lr_is_fitted_on_validation_only_and_keeps_the_better_members_ranking():
    scores = hand_made_scores()
    weights, bias = fit_lr(scores, ["a", "b"])
    assert weights[0] > 0.5 and abs(weights[1]) < weights[0] / 4  # on train, b would win: the fit never saw train
    on_train, _ = fit_lr(scores, ["a", "b"], split="train")
    assert on_train[1] > abs(on_train[0])
    test = scores[scores["split"] == "test"]
    fused = test[["a", "b"]].to_numpy() @ np.array(weights) + bias
    rate_a, rate_b, rate_fused = (metrics.eer(test["y"], s)[0] for s in (test["a"], test["b"], fused))
    assert rate_fused <= rate_a + 0.03 and rate_fused < rate_b - 0.2


def test_lr_refuses_too_few_validation_clips():
    scores = hand_made_scores(n=3)
    with pytest.raises(DataError, match="val split has 3 AI and 3 human"):
        fit_lr(scores, ["a", "b"])


def toy_manifest(root) -> pd.DataFrame:
    """'human' noise and 'ai' harmonic clips (1 s), 6 per class in train and val, 4 in test."""
    rng = np.random.default_rng(0)
    t = np.arange(SR) / SR
    rows = []
    for split, n in (("train", 6), ("val", 6), ("test", 4)):
        for label in ("human", "ai"):
            for i in range(n):
                f0 = rng.uniform(120, 240)
                wave = (sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 5)) if label == "ai"
                        else rng.standard_normal(SR))
                path = root / f"{split}_{label}_{i}.wav"
                sf.write(path, (0.1 * wave / np.abs(wave).max()).astype(np.float32), SR)
                rows.append({"path": str(path), "label": label, "language": "english", "split": split,
                             "speaker": f"{label}{i}", "duration": 1.0,
                             **dict.fromkeys(("engine", "family"), "harmonic" if label == "ai" else "human")})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, save_tiny_model):
    root = tmp_path_factory.mktemp("fusion")
    members = [save_tiny_model(root / f"v{i}", seed=i, threshold=0.1 * i) for i in (1, 2)]
    return root, toy_manifest(root), members


def test_ensemble_dir_loads_as_one_model_and_scores_a_file(setup):
    root, manifest, members = setup
    built = build(members, manifest, root / "ens", gmm=False, combine="mean")
    assert (root / "ens" / fusion.ENSEMBLE_FILE).is_file() and not (root / "ens" / fusion.GMM_FILE).exists()
    det = load_detector(root / "ens", backend="torch")
    assert isinstance(det, fusion.FusedDetector) and det.members == ["v1", "v2"]
    r = det.score_file(manifest["path"].iloc[0])
    singles = [load_detector(m, backend="torch").score_file(manifest["path"].iloc[0]) for m in members]
    assert r["members"] == pytest.approx({"v1": singles[0]["aiLogit"], "v2": singles[1]["aiLogit"]}, abs=1e-5)
    assert r["aiLogit"] == pytest.approx(np.mean([s["aiLogit"] for s in singles]), abs=1e-5)
    assert r["aiScore"] == pytest.approx(1 / (1 + np.exp(-r["aiLogit"])), abs=1e-5)
    assert r["threshold"] == pytest.approx(built.threshold) and r["chunks"] == singles[0]["chunks"]


def test_fused_gmm_and_network_round_trip_without_pickle_and_compare_on_test(setup):
    root, manifest, members = setup
    built = build(members[:1], manifest, root / "fused", gmm=True, combine="lr", gmm_components=2)
    spec = json.loads((root / "fused" / fusion.FUSION_FILE).read_text())
    assert spec["fitted_on"] == "validation" and spec["members"][0]["path"] == "../v1" and len(spec["weights"]) == 2
    with np.load(root / "fused" / fusion.GMM_FILE, allow_pickle=False) as arrays:
        assert {"means_0", "variances_1", "weights_1", "mean", "std"} <= set(arrays.files)
    det = load_detector(root / "fused", backend="torch")
    test = manifest[manifest["split"] == "test"].reset_index(drop=True)
    waves = [sf.read(p, dtype="float32")[0] for p in test["path"]]
    assert det.gmm.score(waves) == pytest.approx(built.gmm.score(waves))
    # the harmonic 'AI' clips and the noise 'human' clips are easy for the GMM: the LR leans on it
    assert spec["weights"][1] > 0 and spec["validation"]["member_eer"][fusion.GMM] < 0.2
    table = compare(det, test, n_boot=50)
    assert set(table) == {"v1", fusion.GMM, "fusion", "resampling"}
    assert all(table[k]["n"] == len(test) and len(table[k]["eer_ci"]) == 2 for k in ("v1", fusion.GMM, "fusion"))
    assert table["fusion"]["eer"] <= table["v1"]["eer"]


def test_gmm_arrays_score_like_the_fitted_model(setup):
    _, manifest, _ = setup
    waves = [sf.read(p, dtype="float32")[0] for p in manifest["path"][:8]]
    gmm = LfccGmm(n_components=2, seed=0).fit(waves, [0, 0, 0, 0, 0, 0, 1, 1])
    assert LfccGmm.from_arrays(gmm.to_arrays()).score(waves) == pytest.approx(gmm.score(waves))


def test_missing_member_is_a_model_error(setup, tmp_path):
    root, manifest, members = setup
    (tmp_path / "ens").mkdir()
    (tmp_path / "ens" / fusion.ENSEMBLE_FILE).write_text(json.dumps(
        {"combine": "mean", "threshold": 0.0, "members": [{"name": "gone", "kind": "network", "path": "../gone"}]}))
    with pytest.raises(ModelError, match="member model .*gone is missing"):
        load_detector(tmp_path / "ens")


@pytest.mark.slow  # CLI subprocesses
def test_detect_cli_takes_an_ensemble_dir_and_repeated_models(setup, run_cli):
    root, manifest, members = setup
    if not (root / "ens").is_dir():
        build(members, manifest, root / "ens", gmm=False, combine="mean")
    clip = manifest["path"].iloc[0]
    for args in (("--model", root / "ens"), ("--model", members[0], "--model", members[1])):
        proc = run_cli("detect", clip, *args, "--backend", "torch")
        assert proc.returncode == 0, proc.stderr
        (result,) = json.loads(proc.stdout)
        assert set(result["members"]) == {"v1", "v2"} and result["fusion"] == "mean"


def test_store_versions_make_an_ensemble_and_a_fused_dir_evaluates_like_a_model(setup, tmp_path):
    from voicelib.evaluation import evaluate
    from voicelib.model import store

    root, manifest, members = setup
    with pytest.raises(ModelError, match="needs 2 or more"):
        fusion.store_versions("english", root=tmp_path / "models")
    for m in members:
        store.register(m, root=tmp_path / "models", language="english")
    versions = fusion.store_versions("english", root=tmp_path / "models")
    assert len(versions) == 2 and all((v / "model.safetensors").is_file() for v in versions)
    build(versions, manifest, tmp_path / "ens", gmm=False, combine="lr")
    result = evaluate.evaluate_run(tmp_path / "ens", manifest, out_dir=tmp_path / "eval", baselines=False,
                                   robust=False, n_boot=20)
    assert 0.0 <= result["eer"] <= 1.0 and result["n_test"] == 8
    assert result["threshold"] == pytest.approx(load_detector(tmp_path / "ens").threshold)
