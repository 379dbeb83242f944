"""Detection with a tiny randomly initialised model saved through the store."""
import json

import numpy as np
import pytest

from voicelib.errors import AudioError, ModelError
from voicelib.model import store
from voicelib.model.saving import load_model
from voicelib.scoring.decisions import AI, HUMAN, INCONCLUSIVE, classify
from voicelib.scoring.load import load_detector
from voicelib.scoring.paths import detect_paths, expand_paths
from voicelib.scoring.windows import chunk_bounds

SR = 16000


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, save_tiny_model):
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def detector(tiny_model):
    return load_detector(tiny_model, backend="torch")


def test_chunk_bounds_of_a_seven_second_file():
    bounds = chunk_bounds(7 * SR, SR, chunk_duration=3.0, overlap=0.5)
    assert [(s / SR, e / SR) for s, e in bounds] == [(0, 3), (1.5, 4.5), (3, 6), (4.5, 7)]


def test_chunk_bounds_exact_fit_short_file_and_no_overlap():
    assert chunk_bounds(6 * SR, SR) == [(0, 3 * SR), (int(1.5 * SR), int(4.5 * SR)), (3 * SR, 6 * SR)]
    assert chunk_bounds(SR, SR) == [(0, SR)]
    assert chunk_bounds(7 * SR, SR, overlap=0.0) == [(0, 3 * SR), (3 * SR, 6 * SR), (6 * SR, 7 * SR)]
    with pytest.raises(ValueError, match="overlap"):
        chunk_bounds(SR, SR, overlap=1.0)


def test_classify_band_and_confidence():
    assert classify(0.9, 0.5) == (AI, pytest.approx(0.8))
    assert classify(0.1, 0.5) == (HUMAN, pytest.approx(0.8))
    assert classify(0.55, 0.5)[0] == INCONCLUSIVE
    assert classify(0.55, 0.5, band=0.0)[0] == AI


def test_score_array_reports_chunks_and_a_calibrated_score(detector, make_noise):
    wave = make_noise(duration=7.0, amplitude=0.1)
    r = detector.score_array(wave, SR)
    assert [(c["start"], c["end"]) for c in r["chunks"]] == [(0, 3), (1.5, 4.5), (3, 6), (4.5, 7)]
    assert all(0 <= c["score"] <= 1 for c in r["chunks"]) and r["skippedChunks"] == 0
    assert 0 <= r["aiScore"] <= 1 and 0 <= r["confidence"] <= 1 and 0 <= r["multiSpeakerScore"] <= 1
    assert r["classification"] in {AI, HUMAN, INCONCLUSIVE}
    assert sum(r["languageDistribution"].values()) == pytest.approx(1, abs=1e-4)
    assert set(r["languageDistribution"]) == {"english", "hindi", "tamil", "malayalam", "telugu"}
    assert r["duration"] == 7.0
    # the clip score is the calibrated mean of the chunk logits (a=1, b=0: the sigmoid)
    assert r["aiScore"] == pytest.approx(1 / (1 + np.exp(-r["aiLogit"])), abs=1e-5)


def test_batched_scoring_equals_one_by_one(detector, make_noise):
    waves = [make_noise(duration=d, seed=i) for i, d in enumerate((1.0, 4.0, 7.5))]
    together = detector.score_arrays(waves, SR)
    alone = [detector.score_array(w, SR) for w in waves]
    for t, a in zip(together, alone):
        assert t["aiLogit"] == pytest.approx(a["aiLogit"], abs=1e-4)


def test_short_file_still_gets_a_score_and_other_rates_are_resampled(detector, make_noise):
    r = detector.score_array(make_noise(duration=0.5), SR)
    assert len(r["chunks"]) == 1 and r["chunks"][0]["end"] == 0.5 and r["chunks"][0]["score"] is not None
    r8 = detector.score_array(make_noise(duration=2.0, sr=8000), 8000)
    assert r8["duration"] == 2.0


def test_silent_chunk_is_skipped_and_said_so(detector, make_noise):
    wave = np.r_[make_noise(duration=3.0), np.zeros(3 * SR, np.float32), make_noise(duration=3.0, seed=1)]
    r = detector.score_array(wave, SR)
    skipped = [c for c in r["chunks"] if c.get("skipped") == "silent"]
    assert [(c["start"], c["end"]) for c in skipped] == [(3.0, 6.0)] and r["skippedChunks"] == 1
    assert skipped[0]["score"] is None


def test_silent_wave_is_refused(detector):
    with pytest.raises(AudioError, match="silent"):
        detector.score_array(np.zeros(SR, np.float32), SR)


def test_score_files_mixes_results_and_error_entries(detector, tmp_path, make_noise):
    import soundfile as sf

    good = tmp_path / "good.wav"
    sf.write(good, make_noise(duration=2.0), SR)
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "corrupt.flac").write_bytes(b"not audio at all" * 10)
    sf.write(tmp_path / "silent.wav", np.zeros(SR, np.float32), SR)
    (tmp_path / "notes.txt").write_text("hello")
    paths = [good, tmp_path / "missing.wav", tmp_path / "empty.wav", tmp_path / "corrupt.flac",
             tmp_path / "silent.wav", tmp_path / "notes.txt"]
    results = detector.score_files(paths)
    assert "aiScore" in results[0]
    reasons = [r["error"] for r in results[1:]]
    assert all("\n" not in r for r in reasons)
    for reason, word in zip(reasons, ["no such file", "empty", "not a readable audio", "silent", "unsupported"]):
        assert word in reason


def test_expand_paths_dirs_and_globs(tmp_path):
    (tmp_path / "a").mkdir()
    for name in ("a/x.wav", "a/y.flac", "a/z.txt", "b.mp3"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "empty_dir").mkdir()
    assert expand_paths([tmp_path / "a"]) == ([str(tmp_path / "a/x.wav"), str(tmp_path / "a/y.flac")], [])
    assert expand_paths([str(tmp_path / "*.mp3"), tmp_path / "b.mp3"]) == ([str(tmp_path / "b.mp3")], [])
    files, problems = expand_paths([str(tmp_path / "nothing*.wav"), tmp_path / "empty_dir", tmp_path / "gone.wav"])
    assert files == [str(tmp_path / "gone.wav")]  # the loader reports a missing file
    assert [p["error"].split(";")[0] for p in problems] == ["pattern matches no file",
                                                          "directory holds no audio files with a supported extension"]


def test_detect_paths_counts_failures(detector, tmp_path, make_noise):
    import soundfile as sf

    sf.write(tmp_path / "ok.wav", make_noise(duration=1.0), SR)
    results, n_failed = detect_paths([tmp_path / "ok.wav", tmp_path / "gone.wav"], detector)
    assert n_failed == 1 and "aiScore" in results[0] and "error" in results[1]
    json.dumps(results)  # plain JSON types only


def test_bad_model_paths_raise_model_error(tmp_path, tiny_model, save_tiny_model):
    with pytest.raises(ModelError, match="no such model directory"):
        load_detector(tmp_path / "nope")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((tiny_model / "config.json").read_text())
    (broken / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ModelError):
        load_detector(broken)
    other = save_tiny_model(tmp_path / "other")
    cfg = json.loads((other / "config.json").read_text())
    cfg["model"]["width"] = 8  # weights no longer match the config
    (other / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="do not match"):
        load_detector(other)


def test_store_language_lookup(tmp_path, tiny_model):
    store.register(tiny_model, root=tmp_path / "models", language="hindi", promote=True)
    det = load_detector(language="hindi", models_root=tmp_path / "models")
    assert det.sample_rate == SR
    with pytest.raises(ModelError, match="no current model"):
        load_detector(language="tamil", models_root=tmp_path / "models")


def test_inference_copy_gives_the_same_outputs(tiny_model):
    import torch

    from voicelib.scoring.torchnet import inference_copy

    model, _ = load_model(tiny_model)
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():  # non-trivial statistics and affine terms, as after training
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen))
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=gen))
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen))
    feats = torch.randn(3, 80, 120)
    with torch.inference_mode():
        a, b = model(feats), inference_copy(model)(feats)
    for key in ("ai", "language", "multi"):
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4)


def test_onnx_backend_matches_torch(tiny_model, make_noise):
    pytest.importorskip("onnxruntime")
    waves = [make_noise(duration=d, seed=i) for i, d in enumerate((0.7, 5.0))]
    fast = load_detector(tiny_model, backend="onnx").score_arrays(waves, SR)
    ref = load_detector(tiny_model, backend="torch").score_arrays(waves, SR)
    for f, r in zip(fast, ref):
        assert f["aiLogit"] == pytest.approx(r["aiLogit"], abs=1e-4)
        assert [c["score"] for c in f["chunks"]] == pytest.approx([c["score"] for c in r["chunks"]], abs=1e-4)
    with pytest.raises(ValueError, match="backend"):
        load_detector(tiny_model, backend="tensorrt")


def test_untrained_language_head_is_reported_as_null(tmp_path, make_noise, save_tiny_model):
    det = load_detector(save_tiny_model(tmp_path / "one_language", language_head=False), backend="torch")
    r = det.score_array(make_noise(duration=1.0), SR)
    assert r["languageDistribution"] is None and r["multiSpeakerScore"] is not None
