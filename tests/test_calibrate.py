"""Recalibration on a user's own recordings (the threshold calls the chosen share of their humans AI, with an
interval over speakers, ships as a new version, refused when too little), and windows that follow the model."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voicelib import __main__ as cli
from voicelib.errors import DataError, ModelError
from voicelib.evaluation import recalibrate
from voicelib.model import store
from voicelib.model.config import ModelConfig
from voicelib.model.registry import build_model
from voicelib.model.saving import save_model
from voicelib.scoring.load import load_detector

SR = 16000


def _folder(root: Path, *, speakers: int, per_speaker: int, seed: int, tone: bool) -> Path:
    """speakers sub-folders of 2 s clips: noisy harmonics ('human') or clean tones ('ai'), seeded."""
    rng = np.random.default_rng(seed)
    t = np.arange(2 * SR) / SR
    for s in range(speakers):
        for i in range(per_speaker):
            f0 = rng.uniform(100, 250)
            wave = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 5))
            if not tone:
                noise = rng.uniform(0.1, 0.6) * rng.standard_normal(t.size)
                wave = wave * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)) + noise
            path = root / f"speaker{s}" / f"clip{i}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, (0.1 * wave / np.abs(wave).max()).astype(np.float32), SR)
    return root


@pytest.fixture(scope="module")
def model(tmp_path_factory, save_tiny_model) -> Path:
    root = tmp_path_factory.mktemp("models")
    entry = store.register(save_tiny_model(tmp_path_factory.mktemp("m") / "tiny"), root=root, language="english")
    return entry


def test_the_threshold_calls_the_target_share_of_the_users_humans_ai_and_ships_as_a_version(model, tmp_path):
    humans = _folder(tmp_path / "human", speakers=5, per_speaker=8, seed=0, tone=False)
    ai = _folder(tmp_path / "ai", speakers=2, per_speaker=6, seed=1, tone=True)
    det = load_detector(model, backend="torch")
    human = recalibrate.score_folder(det, humans, chunk_duration=2.0, overlap=0.5)
    fake = recalibrate.score_folder(det, ai, chunk_duration=2.0, overlap=0.5)
    assert len(human.logits) == 40 and set(human.speakers) == {f"speaker{i}" for i in range(5)}
    point = recalibrate.operating_point(human, fake, target_fpr=0.1, meta=det.meta)
    called = point["humans_called_ai"]
    assert called["share"] <= 0.1 + 1 / 40 and called["speakers"] == 5
    assert called["ci95"][0] <= called["share"] <= called["ci95"][1]
    assert 0.0 <= point["ai_missed"]["share"] <= 1.0 and point["ai_missed"]["n"] == 12
    root = model.parent.parent
    entry = recalibrate.write_version(model, point, models_root=root, language="english")
    assert store.current("english", root=root) == entry != model
    shipped = load_detector(entry, backend="torch")
    results = shipped.score_files(sorted(str(p) for p in humans.rglob("*.wav")), chunk_duration=2.0, overlap=0.5)
    share = np.mean([r["aiLogit"] >= point["threshold"] for r in results])
    assert share == pytest.approx(called["share"])  # the shipped model calls exactly that share of them AI
    assert shipped.meta["operating_point"]["fitted_on"] == "the user's recordings"
    assert store.rollback(root, "english") == model  # reversible like any version


def test_too_few_recordings_or_speakers_are_refused_in_one_line(model, tmp_path):
    det = load_detector(model, backend="torch")
    few = recalibrate.score_folder(det, _folder(tmp_path / "few", speakers=2, per_speaker=12, seed=2, tone=False),
                                   chunk_duration=2.0, overlap=0.5)
    with pytest.raises(DataError, match="at least 20 recordings from 3 speakers") as error:
        recalibrate.check_enough(few, tmp_path / "few")
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="target_fpr"):
        recalibrate.operating_point(few, None, target_fpr=0.7, meta={})
    with pytest.raises(FileNotFoundError, match="no such folder"):
        recalibrate.score_folder(det, tmp_path / "missing", chunk_duration=2.0, overlap=0.5)


def test_the_command_line_calibrates_and_refuses_in_one_line(model, tmp_path, capsys):
    humans = _folder(tmp_path / "human", speakers=4, per_speaker=6, seed=3, tone=False)
    root = model.parent.parent
    before = store.current("english", root=root) if (root / "english" / "current.json").exists() else None
    assert cli.main(["calibrate", "--model", str(model), "--human", str(humans), "--language", "english",
                     "--models-root", str(root), "--target-fpr", "0.1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert store.current("english", root=root) == Path(out["version"]) != before
    assert out["humans_called_ai"]["n"] == 24 and out["humans_called_ai"]["speakers"] == 4
    few = _folder(tmp_path / "few", speakers=1, per_speaker=5, seed=4, tone=False)
    assert cli.main(["calibrate", "--model", str(model), "--human", str(few), "--models-root", str(root)]) == 2
    err = capsys.readouterr().err
    assert "at least 20 recordings from 3 speakers" in err and len(err.strip().splitlines()) == 1


def test_detection_windows_follow_the_models_training_segment(tmp_path, capsys):
    clip = _folder(tmp_path / "clip", speakers=1, per_speaker=1, seed=5, tone=True) / "speaker0" / "clip0.wav"
    for segment in (1.0, 2.0):
        cfg = ModelConfig(width=4, blocks=(1, 1, 1, 1), segment_seconds=segment)
        model_dir = save_model(build_model(cfg, seed=0).eval(), tmp_path / f"m{segment}",
                               config={"model": cfg.to_dict(), "threshold": 0.0, "threshold_scale": "logit",
                                       "calibration": {"a": 1.0, "b": 0.0}}, metrics={})
        assert cli.main(["detect", str(clip), "--model", str(model_dir)]) == 0
        chunks = json.loads(capsys.readouterr().out)[0]["chunks"]
        assert chunks[0]["end"] - chunks[0]["start"] == segment  # the model's own window, no literal 3 s
    assert cli.main(["detect", str(clip), "--model", str(model_dir), "--chunk-duration", "100000"]) == 2
    assert "--chunk-duration must be in (0, 60]" in capsys.readouterr().err


@pytest.mark.parametrize("field, value, message", [
    ("band", None, "band=nan, not a finite number"), ("threshold", float("nan"), "threshold=nan"),
    ("band", 0.7, "band 0.7 must be in [0, 0.5)"), ("calibration", {"a": -1.0, "b": 0.0}, "slope a=-1.0"),
    ("threshold_scale", "percent", "threshold_scale 'percent'")])
def test_a_damaged_operating_point_is_refused_at_load_in_one_line(field, value, message, tmp_path, save_tiny_model):
    model_dir = save_tiny_model(tmp_path / "m")
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, field: value}))
    with pytest.raises(ModelError, match=re.escape(message)) as error:
        load_detector(model_dir)
    assert "\n" not in str(error.value)
