"""The HTML report: tables and figures from a hand-made run directory, self-contained index.html."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from voicelib.data import manifest
from voicelib.files import RunDir
from voicelib.report import html, plots, sections
from voicelib.report import page as report_page
from voicelib.stages import collect as collect_stage


def _clip(path: Path, freq: float, seconds: float, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    wave = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave.astype(np.float32), 16000)
    return path


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A run directory as the five stages leave it, with tones standing in for speech."""
    run = tmp_path / "reports" / "hindi" / "20260101-000000-abcdef"
    rows = []
    for i in range(12):
        label = "ai" if i % 3 == 0 else "human"
        path = _clip(tmp_path / "audio" / f"{label}_{i}.wav", 200 + 40 * i, 1.0 + 0.5 * (i % 4), i)
        rows.append({"path": str(path), "language": "hindi", "label": label, "source": "tones",
                     "engine": "espeak-ng" if label == "ai" else "human", "speaker": f"spk{i % 5}",
                     "group": f"g{i}", "duration": 1.0 + 0.5 * (i % 4), "sample_rate": 16000,
                     "split": ["train", "val", "test", "test"][i % 4]})
    run.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(run / "manifest.csv", index=False)
    collect_stage.write(RunDir(run), pd.DataFrame(rows), pd.DataFrame(columns=["path", "reason"]),
                        ["gtts unreachable: 3 texts"])
    before, after = rows[0]["path"], rows[1]["path"]
    (run / "augment").mkdir()
    (run / "augment" / "augment.json").write_text(json.dumps({"config": {"p_gain": 0.5, "snr_db": [5, 40]}, "seed": 0,
        "examples": [{"label": "ai", "before": before, "after": after, "transforms": "gain,reverb"}]}))
    pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [0.9, 0.6, 0.4], "val_eer": [0.4, 0.3, 0.25],
                  "val_auc": [0.6, 0.7, 0.8]}).to_csv(run / "history.csv", index=False)
    test = [r for r in rows if r["split"] == "test"]
    pd.DataFrame({"path": [r["path"] for r in test], "label": [r["label"] for r in test],
                  "ai_logit": np.linspace(-2, 2, len(test)), "ai_score": np.linspace(0.1, 0.9, len(test)),
                  "lfcc_gmm": np.linspace(-1, 1, len(test))}).to_csv(run / "scores.csv", index=False)
    metrics = {"eer": 0.125, "roc_auc": 0.93, "threshold": 0.41, "n_test": 4, "ci": {"eer": [0.05, 0.3]},
               "breakdowns": {"engine": {"espeak-ng": {"eer": 0.1, "n": 2}, "human": {"eer": 0.2, "n": 2}}},
               "baselines": {"lfcc_gmm": {"eer": 0.3, "roc_auc": 0.7},
                             "shortcut_probe": {"eer": 0.2, "verdict": "shortcuts", "weights": {"rms_dbfs": 1.5}}},
               "calibration": {"method": "platt", "ece_test_after": 0.04, "a": 1.0, "b": 0.0},
               "confusion": {"tn": 2, "fp": 0, "fn": 1, "tp": 3},
               "inconclusive": {"band": 0.1, "low": 0.31, "high": 0.51},
               "shortcut_warning": "SHORTCUT WARNING: trivial cues separate the classes (EER 0.20)"}
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "params.json").write_text(json.dumps({"run_id": run.name, "created": "2026-01-01T00:00:00",
        "parameters": {"language": "hindi", "seed": 3, "epochs": 3, "device": "cpu"},
        "environment": {"python": "3.11", "git_revision": "abc123"}}))
    (run / "stages.json").write_text(json.dumps({"stages": {"01_collect_data": {"status": "done", "duration_s": 2.5},
                                                             "05_report": {"status": "running"}}}))
    return run


def test_data_tables_count_and_minutes(run_dir: Path) -> None:
    df = pd.read_csv(run_dir / "manifest.csv")
    tables = manifest.tables(df)
    by_class = tables["label"].set_index("label")
    assert by_class.loc["ai", "clips"] == 4 and by_class.loc["human", "clips"] == 8
    assert by_class["minutes"].sum() == pytest.approx(df["duration"].sum() / 60, abs=0.01)
    assert set(tables["split_by_class"]["split"]) == {"train", "val", "test"}
    assert {"speaker", "label", "clips", "minutes"} <= set(tables["speaker"].columns)
    summary = json.loads((run_dir / "data_summary.json").read_text())
    assert summary["clips"] == 12 and summary["classes"] == {"human": 8, "ai": 4}
    assert summary["ai_engines_by_split"]["test"] == ["espeak-ng"] and summary["notes"] == ["gtts unreachable: 3 texts"]


def test_pick_examples_prefers_test_split_and_both_classes(run_dir: Path) -> None:
    df = pd.read_csv(run_dir / "manifest.csv")
    picked = sections.pick_examples(df, per_class=2, seed=0)
    assert set(picked["label"]) == {"ai", "human"} and (picked["split"] == "test").all()
    assert len(picked) == 4 and (picked.groupby("label")["speaker"].nunique() == 2).all()
    only_train = df[(df["label"] == "human") | (df["split"] == "train")]
    assert set(sections.pick_examples(only_train, per_class=1)["label"]) == {"ai", "human"}


def test_audio_tag_is_short_inline_wav(run_dir: Path) -> None:
    path = pd.read_csv(run_dir / "manifest.csv")["path"].iloc[3]  # 2.5 s clip
    tag = html.audio_tag(path, seconds=1.0)
    data = re.search(r'base64,([^"]+)"', tag).group(1)
    import base64
    import io
    wave, sr = sf.read(io.BytesIO(base64.b64decode(data)))
    assert sr == 16000 and len(wave) == 16000


def test_write_index_is_self_contained(run_dir: Path) -> None:
    page = report_page.write_index(run_dir).read_text()
    sections = [m for m in re.findall(r'<section id="([^"]+)"', page)]
    assert sections == ["data", "augmentation", "training", "evaluation", "model-card", "environment"]
    assert "could not be built" not in page
    assert page.count("data:image/png;base64,") >= 5 and "<audio controls" in page
    assert not re.search(r'(src|href)="https?://', page)  # no CDN, no remote content
    assert "0.125" in page and "0.05–0.3" in page and "trivial cues separate the classes" in page
    assert "lfcc_gmm" in page and "rms_dbfs" in page and "per engine" in page
    assert "not evaluated in this run" in page  # no robustness table: said so, in the model card too
    assert 'href="history.csv"' in page and 'href="01_collect_data.html"' in page
    assert "Only one AI engine (espeak-ng)" in page and "AI engines in the test split: espeak-ng." in page
    assert 'alt="roc"' in page and 'alt="confusion_matrix"' in page  # drawn from scores.csv and metrics.json
    assert "Collection: gtts unreachable: 3 texts" in page  # an unreachable source is said at the top


def test_a_failing_section_fails_the_report_but_the_page_is_written(run_dir: Path) -> None:
    (run_dir / "scores.csv").write_text("not,a\nscores,table\n")
    with pytest.raises(report_page.ReportError, match="section.*failed: Evaluation"):
        report_page.write_index(run_dir)
    page = (run_dir / "index.html").read_text()
    assert "This section could not be built" in page and '<section id="environment">' in page


def test_write_index_reports_missing_stages(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "stages.json").write_text(json.dumps({"stages": {"03_finetune": {"status": "failed",
                                                                             "error": "stage 03 failed at cell 4"}}}))
    page = report_page.write_index(run).read_text()
    assert "No manifest.csv" in page and "No metrics.json" in page and "failed at cell 4" in page


def test_training_curves_and_nested_tables() -> None:
    history = pd.DataFrame({"epoch": [1, 2], "train_loss": [1.0, 0.5], "val_eer": [0.3, 0.2]})
    fig = plots.training_curves(history)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "validation"]
    assert len(fig.axes[0].lines) == 1 and len(fig.axes[1].lines) == 1
    nested = html.nested_html({"eer": 0.1, "per_language": {"hindi": {"eer": 0.1}, "tamil": {"eer": 0.3}}})
    assert "per language" in nested and "tamil" in nested


def test_leave_one_family_out_and_the_final_fit_are_on_the_page(run_dir: Path) -> None:
    lofo_result = {"families": ["neural", "vocoder"], "complete": True, "mean_eer": 0.25, "pooled_eer": 0.3,
                   "lfcc_gmm_mean_eer": 0.4, "lfcc_gmm_pooled_eer": 0.45, "fused_mean_eer": 0.2,
                   "fused_pooled_eer": 0.22,
                   "folds": [{"family": f, "n_ai": 20, "n_human": 10, "eer": e, "eer_ci": [e - 0.1, e + 0.1],
                              "lfcc_gmm_eer": 0.4, "fused_eer": 0.2} for f, e in (("neural", 0.2), ("vocoder", 0.3))]}
    (run_dir / "lofo.json").write_text(json.dumps(lofo_result))
    (run_dir / "train.json").write_text(json.dumps({"store_entry": "models/hindi/20260101-000000"}))
    (run_dir / "final.json").write_text(json.dumps({
        "enabled": True, "shipped": "final", "store_entry": "models/hindi/20260101-000100", "promoted": True,
        "n_clips": 12, "epochs": 3, "operating_point": {"threshold": 0.2, "n_clips": 8}}))
    page = report_page.write_index(run_dir).read_text()
    assert "leave-one-family-out EER<b>25.0%</b>" in page and "LFCC-GMM 40.0%, fused 20.0%" in page
    assert "trained without each AI family, all its clips scored" in page and "mean over families" in page
    assert "Shipped model: 20260101-000100, refitted on all 12 clips" in page
    assert "Which model is which" in page and "evaluated model's 8 held-out scores" in page
    assert "These figures are the evaluated model&#x27;s" in page
