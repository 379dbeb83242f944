"""Recalibration on a user's own recordings: the threshold calls the chosen share of their humans AI, with an
interval over speakers, lands in the store as a new version, and is refused when there is too little to fit."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voicelib.errors import DataError
from voicelib.evaluation import recalibrate
from voicelib.model import store
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
