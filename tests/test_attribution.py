"""Attribution: the optional generator-family head learns, saves, reloads, exports and reaches detection."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from voicelib.audio.augment import AugmentConfig
from voicelib.audio.cache import AudioCache
from voicelib.data.dataset import SegmentDataset, family_indices
from voicelib.model.config import ModelConfig
from voicelib.model.registry import build_model
from voicelib.model.saving import load_model
from voicelib.training.config import TrainConfig
from voicelib.training.fit import fit, with_families

SR = 16000

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def family_manifest(root, *, n=8, seconds=1.5) -> pd.DataFrame:
    """Noisy modulated 'human' clips and two AI families: 'low' (clean harmonics < 200 Hz), 'high' (clean > 900 Hz)."""
    rng = np.random.default_rng(1)
    t = np.arange(int(seconds * SR)) / SR
    rows = []
    for label, family in (("human", ""), ("ai", "low"), ("ai", "high")):
        for i in range(n):
            f0 = rng.uniform(900, 1100) if family == "high" else rng.uniform(100, 200)
            wave = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 4))
            if label == "human":
                wave = wave * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.3 * rng.standard_normal(len(t))
            path = root / f"{label}_{family}_{i}.flac"
            sf.write(path, (0.1 * wave / np.abs(wave).max()).astype(np.float32), SR)
            rows.append({"path": str(path), "label": label, "language": "english", "speaker": f"{label}{family}{i % 3}",
                         "engine": family or "", "family": family, "hash": f"{label}{family}{i:04d}",
                         "duration": seconds, "split": "val" if i % 4 == 3 else "train"})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def fam(tmp_path_factory) -> pd.DataFrame:
    return family_manifest(tmp_path_factory.mktemp("fam"))


@pytest.fixture(scope="module")
def tiny(tiny_config):
    return tiny_config(cmvn=False, family_head=True)


@pytest.fixture(scope="module")
def trained(fam, tmp_path_factory, tiny):
    out = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(epochs=4, batch_size=8, lr=3e-3, seed=0, family_weight=1.0, mix_prob=0.0,
                            segments_per_epoch=64)
    return fit(fam, cfg, out_dir=out / "m", model_config=tiny, augment_config=AugmentConfig.none(),
                     device="cpu", progress=False, cache_dir=out / "cache")


def test_family_targets_mask_humans_unknown_families_and_mixtures(fam, tmp_path):
    idx = family_indices(fam.assign(family=fam["family"].replace({"high": "other"})), ["high", "low"])
    assert set(idx[fam["label"] == "human"]) == {-1}
    assert set(idx[(fam["family"] == "high").to_numpy()]) == {-1}  # 'other' is not one of the head's families
    assert set(idx[(fam["family"] == "low").to_numpy()]) == {1}
    cache = AudioCache(tmp_path / "c", SR)
    ds = SegmentDataset(fam, cache, segment_seconds=1.0, mix_prob=1.0, families=["high", "low"])
    assert all(int(ds[i]["family"]) == -1 for i in range(len(ds)) if float(ds[i]["multi"]) == 1.0)
    assert int(SegmentDataset(fam, cache, segment_seconds=1.0)[8]["family"]) == -1  # no families: no targets


def test_family_head_needs_two_families_and_round_trips_the_config():
    with pytest.raises(ValueError, match="at least 2 families"):
        build_model(ModelConfig(width=4, blocks=(1, 1, 1, 1), family_head=True, families=("a",)))
    with pytest.raises(ValueError, match="family_head=True"):
        ModelConfig(families=("a", "b"))
    cfg = ModelConfig(width=4, blocks=(1, 1, 1, 1), family_head=True, families=("a", "b", "c"))
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    out = build_model(cfg, seed=0).eval()(torch.randn(2, 80, 50))
    assert out["family"].shape == (2, 3)
    assert "family" not in build_model(ModelConfig(width=4, blocks=(1, 1, 1, 1)), seed=0).eval()(torch.randn(1, 80, 50))


def test_one_family_in_training_turns_the_head_off(fam, tiny):
    one = fam[fam["family"] != "high"]
    assert with_families(tiny, one).family_head is False
    assert with_families(tiny, fam).families == ("high", "low")


def test_tiny_training_learns_the_family_head_and_detection_reports_it(trained, fam):
    from voicelib.scoring.load import load_detector

    model, meta = load_model(trained.model_dir)
    assert model.cfg.families == ("high", "low") and meta["training"]["loss_weights"]["family"] == 1.0
    assert "train_family_loss" in trained.history
    ai = fam[fam["label"] == "ai"]
    for backend in ("torch", "onnx"):
        det = load_detector(trained.model_dir, backend=backend)
        results = det.score_files(list(ai["path"]))
        dists = [r["familyDistribution"] for r in results]
        assert all(set(d) == {"high", "low"} and sum(d.values()) == pytest.approx(1, abs=1e-4) for d in dists)
        predicted = [max(d, key=d.get) for d in dists]
        accuracy = float(np.mean([p == f for p, f in zip(predicted, ai["family"])]))
        assert accuracy >= 0.8, f"{backend}: family accuracy {accuracy:.2f} on training-like clips (chance 0.5)"


def test_family_distribution_is_null_without_the_head(trained, fam, tmp_path, tiny):
    from voicelib.scoring.load import load_detector

    cfg = TrainConfig(epochs=1, batch_size=8, seed=0)
    no_head = dataclasses.replace(tiny, family_head=False)
    plain = fit(fam, cfg, out_dir=tmp_path / "m", model_config=no_head,
                      augment_config=AugmentConfig.none(), device="cpu", progress=False, cache_dir=tmp_path / "cache")
    r = load_detector(plain.model_dir, backend="torch").score_file(fam["path"].iloc[0])
    assert r["familyDistribution"] is None and "train_family_loss" not in plain.history


def test_evaluation_writes_predicted_family_and_the_report_shows_the_confusion(trained, fam, tmp_path):
    from voicelib.evaluation import evaluate
    from voicelib.report import plots, sections

    test = fam.assign(split=np.where(np.arange(len(fam)) % 4 == 0, "test", fam["split"]))
    result = evaluate.evaluate_run(trained.model_dir, test, out_dir=tmp_path, baselines=False, robust=False, n_boot=20)
    scores = pd.read_csv(tmp_path / "scores.csv")
    ai = scores["label"] == "ai"
    assert scores.loc[ai, "predicted_family"].isin(["high", "low"]).all()
    att = result["attribution"]
    assert att["n_ai"] == int(ai.sum()) and sum(sum(v.values()) for v in att["counts"].values()) == att["n_ai"]
    assert 0.0 <= att["accuracy_known_families"] <= 1.0
    assert "family_confusion" in plots.evaluation_figures(scores, result)
    html = sections.evaluation_section(tmp_path)
    assert "family confusion" in html and "attribution (generator-family head" in html
