"""Wave preparation: VAD trims silence and keeps speech, loudness is fixed, exact zeros are dithered."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from voicelib.audio import preprocess
from voicelib.audio.preprocess import PreprocessConfig, prepare
from voicelib.evaluation.baselines import shortcut_features

SR = 16000


def _padded(speech: np.ndarray, lead: float = 1.0, trail: float = 1.5) -> np.ndarray:
    return np.concatenate([np.zeros(int(lead * SR), np.float32), speech, np.zeros(int(trail * SR), np.float32)])


def _speech_energy(wave: np.ndarray) -> float:
    return float(np.sum(wave.astype(np.float64) ** 2))


@pytest.mark.parametrize("backend", ["silero", "energy"])
def test_vad_trims_leading_and_trailing_silence_and_keeps_the_speech(backend, speech):
    if backend == "silero" and preprocess.silero_model_path() is None:
        pytest.skip("silero-vad not installed")
    wave, _ = speech
    padded = _padded(wave)
    cfg = PreprocessConfig(vad_backend=backend, loudness_dbfs=None, dither_dbfs=None)
    out = prepare(padded, SR, cfg)
    cues = shortcut_features(out, SR)
    assert cues["leading_silence_s"] <= 0.25 and cues["trailing_silence_s"] <= 0.25
    assert shortcut_features(padded, SR)["leading_silence_s"] >= 1.0
    assert len(wave) * 0.8 <= len(out) <= len(wave) + 2 * cfg.pad_seconds * SR + FRAME_SLACK
    assert _speech_energy(out) >= 0.99 * _speech_energy(wave)  # nothing loud was cut away


FRAME_SLACK = 2 * preprocess.FRAME


def test_long_pause_inside_speech_is_shortened(speech):
    wave, _ = speech
    two = np.concatenate([wave, np.zeros(3 * SR, np.float32), wave])
    out = prepare(two, SR, PreprocessConfig(vad_backend="energy", loudness_dbfs=None, dither_dbfs=None))
    assert len(out) < len(two) - 2 * SR
    assert _speech_energy(out) >= 0.99 * 2 * _speech_energy(wave)


def test_silence_or_too_short_speech_falls_back_to_the_untrimmed_wave(make_noise, caplog):
    quiet = np.zeros(SR, np.float32)
    quiet[8000:8100] = 0.5  # a click: far shorter than min_seconds
    cfg = PreprocessConfig(vad_backend="energy", loudness_dbfs=None, dither_dbfs=None)
    with caplog.at_level(logging.DEBUG, logger="voicelib.audio.preprocess"):
        out = prepare(quiet, SR, cfg)
    np.testing.assert_array_equal(out, quiet)
    assert "untrimmed" in caplog.text


def test_loudness_is_the_target_whatever_the_input_level(speech):
    wave, _ = speech
    for scale in (0.01, 0.3):
        out = prepare(wave * scale, SR, PreprocessConfig(vad=False, loudness_dbfs=-26.0))
        assert shortcut_features(out, SR)["rms_dbfs"] == pytest.approx(-26.0, abs=0.1)


def test_dither_removes_exact_zeros_deterministically_and_leaves_the_rest(speech):
    wave, _ = speech
    padded = _padded(wave, 0.5, 0.5)
    a = preprocess.dither(padded, level_dbfs=-90.0)
    b = preprocess.dither(padded.copy(), level_dbfs=-90.0)
    np.testing.assert_array_equal(a, b)
    assert not (a == 0).any()
    nonzero = padded != 0
    np.testing.assert_array_equal(a[nonzero], padded[nonzero])
    filled = a[~nonzero]
    assert 20 * np.log10(np.sqrt(np.mean(filled.astype(np.float64) ** 2))) == pytest.approx(-90.0, abs=1.0)
    other = preprocess.dither(_padded(wave * 0.5, 0.5, 0.5), level_dbfs=-90.0)
    assert not np.array_equal(other[~nonzero], filled)  # the seed follows the content


def test_prepare_is_deterministic_and_checks_its_input(speech):
    wave, _ = speech
    padded = _padded(wave)
    np.testing.assert_array_equal(prepare(padded, SR), prepare(padded.copy(), SR))
    with pytest.raises(ValueError, match="16000"):
        prepare(padded, 22050)
    with pytest.raises(ValueError, match="mono"):
        prepare(np.zeros((2, 100), np.float32), SR)


def test_config_round_trips_and_refuses_unknown_keys():
    cfg = PreprocessConfig(vad_threshold=0.6, dither_dbfs=None)
    assert PreprocessConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="PreprocessConfig: unknown field"):
        PreprocessConfig.from_dict({**cfg.to_dict(), "vad_thresh": 0.3})
    with pytest.raises(ValueError, match="vad_backend"):
        PreprocessConfig(vad_backend="webrtc")


def test_energy_fallback_warns_once_when_silero_is_missing(monkeypatch, caplog, speech):
    monkeypatch.setattr(preprocess, "_SESSION", None)
    monkeypatch.setattr(preprocess, "_WARNED", False)
    monkeypatch.setattr(preprocess, "silero_model_path", lambda: None)
    with caplog.at_level(logging.WARNING, logger="voicelib.audio.preprocess"):
        prepare(_padded(speech[0]), SR)
        prepare(_padded(speech[0]), SR)
    assert caplog.text.count("energy VAD") == 1
    with pytest.raises(RuntimeError, match="silero-vad"):
        prepare(speech[0], SR, PreprocessConfig(vad_backend="silero"))


def test_our_onnx_runner_gives_silero_s_own_probabilities(speech):
    if preprocess.silero_model_path() is None:
        pytest.skip("silero-vad not installed")
    import torch
    from silero_vad.utils_vad import OnnxWrapper

    wave = _padded(speech[0], 0.5, 0.5)
    stock = OnnxWrapper(str(preprocess.silero_model_path().parent / "silero_vad.onnx"), force_onnx_cpu=True)
    reference = stock.audio_forward(torch.from_numpy(wave), 16000).numpy().ravel()
    ours = preprocess.speech_probabilities(wave, preprocess._session())
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    assert ours[: int(0.4 * SR) // preprocess.FRAME].max() < 0.5 < ours.max()  # leading silence is not speech
