"""One detector for several languages: the run's languages, per-language registration and promotion, and a
language with AI clips but no human ones refused (never learnt as "this language => AI")."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

import run_pipeline
from voicelib.data.collect import CollectConfig
from voicelib.errors import DataError
from voicelib.files import RunDir
from voicelib.languages import LANGUAGE_NAMES
from voicelib.model import store
from voicelib.stages import collect, final_fit, finetune
from voicelib.training.config import TrainResult

SR = 16000


def test_the_runs_languages_from_the_command_line_to_the_stages():
    assert run_pipeline.split_languages(["hindi"]) == ("hindi", [])
    assert run_pipeline.split_languages(["telugu", "hindi", "telugu"]) == ("telugu", ["telugu", "hindi"])
    assert run_pipeline.split_languages(["all"])[1] == ["all"]
    assert run_pipeline.runs_folder("hindi", []) == "hindi"
    assert run_pipeline.runs_folder("hindi", ["all"]) == "multilingual"
    assert collect.run_languages("hindi", []) == ["hindi"]
    assert collect.run_languages("hindi", ["hindi", "telugu"]) == ["hindi", "telugu"]
    assert collect.run_languages("hindi", ["all"]) == list(LANGUAGE_NAMES)


def _clips(root: Path, language: str, label: str, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for i in range(n):
        path = root / language / label / f"spk{i}_{label}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, (0.1 * rng.standard_normal(SR)).astype(np.float32), SR)


def test_a_language_with_ai_clips_but_no_human_ones_is_refused_unless_all_leaves_it_out(tmp_path):
    corpus = tmp_path / "corpus"
    _clips(corpus, "hindi", "human", 3, 0)
    _clips(corpus, "hindi", "ai", 3, 1)
    _clips(corpus, "tamil", "ai", 3, 2)
    config = CollectConfig(human_sources=[], tts_engines=[], vocoders=[], local_dirs=[str(corpus)], workers=1)
    with pytest.raises(DataError, match="no usable human speech for tamil") as error:
        collect.collect(tmp_path / "data", config, language="hindi", languages=["hindi", "tamil"])
    assert "\n" not in str(error.value)
    one = collect.collect(tmp_path / "data", config, language="hindi", languages=["hindi"])
    assert set(one["language"]) == {"hindi"} and set(one["label"]) == {"human", "ai"}


def test_the_model_is_registered_for_every_language_and_promoted_once_when_it_ships(tmp_path, save_tiny_model):
    model_dir = save_tiny_model(tmp_path / "model")
    result = TrainResult(model_dir, pd.DataFrame({"epoch": [1]}), 1, 0.1, 0.9, 0.0, (1.0, 0.0), False)
    run, root = RunDir(tmp_path / "run"), tmp_path / "models"
    summary = finetune.register(run, result, models_root=root, language="hindi", languages=["hindi", "telugu"])
    assert set(summary["store_entries"]) == {"hindi", "telugu"}
    for language in ("hindi", "telugu"):
        with pytest.raises(Exception, match="no current model"):
            store.current(language, root=root)  # registered by training, not promoted before evaluation
    info = final_fit.ship(run, pd.DataFrame(), enabled=False, models_root=root, language="hindi", promote=True,
                          data_root=tmp_path, languages=["hindi", "telugu"])
    assert info["promoted"] and {store.current(lang, root=root).name for lang in ("hindi", "telugu")} == {
        Path(e).name for e in summary["store_entries"].values()}
