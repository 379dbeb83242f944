"""Evaluation on a tiny synthetic manifest with a tiny random model; breakdown and robustness pieces."""
import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from voicelib import metrics
from voicelib.evaluation import evaluate, robustness
from voicelib.report import plots

SR = 16000


def _frame(y, logit, **cols):
    prob = 1 / (1 + np.exp(-np.asarray(logit, dtype=float)))
    return pd.DataFrame({"y": y, "logit": logit, "prob": prob, **cols})


def test_breakdown_reports_cells_lacking_a_class_instead_of_a_number():
    frame = _frame([0, 0, 1, 1, 1], [-2.0, 1.0, 2.0, 3.0, -1.0], language=["hindi", "hindi", "hindi", "tamil", "tamil"])
    cells = evaluate.breakdown(frame, "language", threshold=0.5, pool_other_class=False)
    assert cells["tamil"]["eer"] is None and "no human" in cells["tamil"]["note"]
    assert cells["tamil"]["n_ai"] == 2 and cells["tamil"]["accuracy"] == 0.5
    assert cells["hindi"]["eer"] == 0.0 and cells["hindi"]["compared"] == "within cell"


def test_engine_breakdown_compares_each_engine_with_all_human_clips():
    frame = _frame([0, 0, 1, 1, 1], [-2.0, -1.0, 2.0, 3.0, -3.0], engine=["human", "human", "tts_a", "tts_a", "tts_b"])
    cells = evaluate.breakdown(frame, "engine", threshold=0.5, pool_other_class=True)
    assert cells["tts_a"]["eer"] == 0.0 and cells["tts_b"]["eer"] == 1.0
    assert "all human" in cells["tts_a"]["compared"]
    assert cells["human"]["compared"].endswith("all AI test clips")


def test_inconclusive_band_counts_and_accuracy_outside():
    s = evaluate.inconclusive_summary([0, 1, 1, 0], [0.1, 0.55, 0.9, 0.7], threshold=0.5, band=0.1)
    assert s["n_inconclusive"] == 1 and s["share_inconclusive"] == 0.25
    assert s["accuracy_outside_band"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("condition", list(robustness.CONDITIONS))
def test_robustness_conditions_change_the_audio_but_keep_it_usable(condition, make_noise):
    wave = make_noise(duration=1.0, amplitude=0.1)
    out, n_bytes = robustness.degrade(wave, SR, condition, seed=0)
    again, _ = robustness.degrade(wave, SR, condition, seed=0)
    assert out.dtype == np.float32 and abs(len(out) - len(wave)) < 0.2 * SR and np.isfinite(out).all()
    np.testing.assert_array_equal(out, again)  # seeded
    assert not np.allclose(out[:len(wave)], wave[:len(out)], atol=1e-3)
    if condition.startswith("mp3"):
        kbps = n_bytes * 8 / 1000
        assert kbps == pytest.approx(int(condition[4:6]), rel=0.15)


def _write_manifest(root, rng):
    rows = []
    for split, n in (("train", 8), ("val", 6), ("test", 8)):
        for i in range(n):
            label = "ai" if i % 2 else "human"
            wave = (0.05 * rng.standard_normal(int(SR * rng.uniform(1.0, 2.0)))).astype(np.float32)
            if label == "ai":  # the "TTS" pads with digital silence: a shortcut the probe must find
                wave = np.r_[np.zeros(int(0.4 * SR), np.float32), wave]
            path = root / f"{split}_{i}.wav"
            sf.write(path, wave, SR)
            rows.append({"path": str(path), "label": label, "split": split, "language": "hindi",
                         "engine": "tts_x" if label == "ai" else "human", "source": f"src_{label}",
                         "speaker": f"spk_{split}_{i}"})
    return pd.DataFrame(rows)


def test_evaluate_run_writes_metrics_and_scores_that_the_figures_are_drawn_from(tmp_path, save_tiny_model):
    manifest = _write_manifest(tmp_path, np.random.default_rng(0))
    model_dir = save_tiny_model(tmp_path / "model", threshold=0.1, calibration=(2.0, -0.5))
    out = tmp_path / "run"
    result = evaluate.evaluate_run(model_dir, manifest, out_dir=out, seed=0, n_boot=50, gmm_components=2)
    saved = json.loads((out / "metrics.json").read_text())
    for key in ("eer", "roc_auc", "threshold", "accuracy", "precision", "recall", "f1", "fpr", "fnr", "confusion",
                "n_test", "ci", "breakdowns", "robustness", "baselines", "shortcut_warning", "calibration",
                "inconclusive"):
        assert key in saved, key
    assert saved["model_dir"] == str(model_dir)  # outside the run directory: named in full
    assert saved["n_test"] == 8 and sum(saved["confusion"].values()) == 8
    # the threshold is the model's (validation) threshold through its calibration, never tuned on test
    assert saved["threshold"] == pytest.approx(1 / (1 + np.exp(-(2.0 * 0.1 - 0.5))))
    assert saved["calibration"]["a"] == 2.0 and "ece_validation_after" in saved["calibration"]
    assert set(saved["robustness"]) == set(robustness.CONDITIONS)
    assert set(saved["baselines"]) == {"lfcc_gmm", "gmm_novelty", "shortcut_probe"}
    assert saved["baselines"]["shortcut_probe"]["eer"] < 0.35 and "SHORTCUT WARNING" in saved["shortcut_warning"]
    assert saved["ci"]["eer"][0] <= saved["eer"] <= saved["ci"]["eer"][1]
    assert saved["breakdowns"]["engine"]["tts_x"]["n_ai"] == 4
    scores = pd.read_csv(out / "scores.csv")
    assert len(scores) == 8 and {"ai_score", "ai_logit", "classification", "lfcc_gmm", "gmm_novelty",
                                 "shortcut_probe"} <= set(scores)
    y = (scores["label"] == "ai").to_numpy()
    assert saved["baselines"]["gmm_novelty"]["eer"] == pytest.approx(metrics.eer(y, scores["gmm_novelty"])[0])
    val_scores = pd.read_csv(out / "val_scores.csv")
    assert set(val_scores["label"]) == {"human", "ai"} and "ai_logit" in val_scores
    figures = plots.evaluation_figures(scores, saved, val_scores)
    assert set(figures) == {"confusion_matrix", "roc", "det", "score_histogram", "reliability", "robustness"}
    roc_lines = figures["roc"].axes[0].get_legend_handles_labels()[1]
    assert [label.split(" ")[0] for label in roc_lines] == ["model", "lfcc_gmm", "gmm_novelty", "shortcut_probe"]
    assert figures["confusion_matrix"].axes[0].texts[0].get_text() == str(saved["confusion"]["tn"])
    assert result["eer"] == saved["eer"]


def test_evaluate_run_refuses_a_one_class_test_split(tmp_path, save_tiny_model):
    manifest = _write_manifest(tmp_path, np.random.default_rng(1))
    manifest = manifest[~((manifest["split"] == "test") & (manifest["label"] == "ai"))]
    with pytest.raises(ValueError, match="human and AI"):
        evaluate.evaluate_run(save_tiny_model(tmp_path / "m"), manifest, out_dir=tmp_path / "run")
