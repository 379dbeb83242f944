"""Tests for voicelib.audio.features: shapes, batching, agreement with librosa, LFCC maths, config round-trip."""
from __future__ import annotations

import dataclasses

import librosa
import numpy as np
import pytest
import scipy.fft
import torch

from voicelib.audio import decode, features
from voicelib.audio.features import LFCC, FeatureConfig, LogMel

CFG = FeatureConfig()


def librosa_mel(wave: np.ndarray, cfg: FeatureConfig = CFG) -> np.ndarray:
    """The reference mel power spectrogram."""
    return librosa.feature.melspectrogram(
        y=wave, sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
        window="hann", center=True, pad_mode="constant", power=2.0, n_mels=cfg.n_mels, fmin=cfg.fmin,
        fmax=cfg.fmax, htk=False, norm="slaney")


def assert_matches_librosa(wave: np.ndarray) -> None:
    """power_mel agrees with librosa to 1e-4 relative wherever the energy is within 60 dB of the peak."""
    ours = LogMel(CFG).power_mel(torch.from_numpy(wave)).numpy()
    ref = librosa_mel(wave)
    assert ours.shape == ref.shape
    audible = ref > 1e-6 * ref.max()
    assert audible.mean() > 0.5
    np.testing.assert_allclose(ours[audible], ref[audible], rtol=1e-4)
    assert np.linalg.norm(ours - ref) / np.linalg.norm(ref) < 1e-5
    np.testing.assert_allclose(features.log_mel(wave), np.log(ref + CFG.log_eps), atol=2e-3)


def test_config_round_trip_and_refusals():
    cfg = FeatureConfig(n_mels=64, top_db=80.0)
    assert FeatureConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="n_melz"):
        FeatureConfig.from_dict({**cfg.to_dict(), "n_melz": 3})
    with pytest.raises(ValueError, match="fmax"):
        FeatureConfig(fmax=9000.0)
    with pytest.raises(ValueError, match="win_length"):
        FeatureConfig(win_length=1024)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.n_mels = 10  # type: ignore[misc]


def test_shapes_and_dtype(speech):
    wave, _ = speech
    single = LogMel(CFG)(torch.from_numpy(wave))
    assert single.shape == (80, features.n_frames(len(wave), CFG)) and single.dtype == torch.float32
    batch = LogMel(CFG)(torch.zeros(3, 16000) + 0.01)
    assert batch.shape == (3, 80, 101)
    assert torch.isfinite(batch).all()


def test_batch_equals_single(speech, make_noise):
    wave, _ = speech
    waves = np.stack([wave[:24000], wave[8000:32000], make_noise(duration=1.5, seed=3)])
    for module in (LogMel(CFG), LFCC(CFG)):
        batched = module(torch.from_numpy(waves))
        for row, one in zip(batched, waves):
            torch.testing.assert_close(row, module(torch.from_numpy(one)), atol=1e-4, rtol=1e-5)


def test_power_mel_matches_librosa_on_espeak(speech):
    assert_matches_librosa(np.ascontiguousarray(speech[0]))


def test_power_mel_matches_librosa_on_real_speech(shared_speech):
    path = sorted((shared_speech / "hindi" / "human").glob("*.flac"))[0]
    assert_matches_librosa(decode.load(path))


def test_tone_lands_in_the_right_mel_band(make_tone):
    spec = features.log_mel(make_tone(1000.0, duration=0.5))
    centres = librosa.mel_frequencies(n_mels=CFG.n_mels + 2, fmin=CFG.fmin, fmax=CFG.fmax, htk=False)[1:-1]
    assert abs(centres[int(np.argmax(spec.mean(axis=1)))] - 1000.0) < 60.0


def test_top_db_clamps_the_floor(speech):
    wave, _ = speech
    padded = np.concatenate([np.zeros(8000, np.float32), wave])
    out = features.log_mel(padded, FeatureConfig(top_db=60.0))
    assert out.max() - out.min() == pytest.approx(60.0 * np.log(10.0) / 10.0, rel=1e-4)


def test_lfcc_is_dct_of_log_linear_energies(speech):
    wave, _ = speech
    cfg = FeatureConfig(lfcc_deltas=False)
    ours = features.lfcc(wave, cfg)
    power = np.abs(librosa.stft(wave.astype(np.float64), n_fft=512, hop_length=160, win_length=400,
                                window="hann", center=True, pad_mode="constant")) ** 2
    energies = np.log(features.linear_filterbank(cfg).astype(np.float64) @ power + cfg.log_eps)
    ref = scipy.fft.dct(energies, type=2, norm="ortho", axis=0)[: cfg.n_lfcc]
    assert ours.shape == (20, power.shape[1])
    np.testing.assert_allclose(ours, ref, atol=2e-3)


def test_lfcc_with_deltas_shape(speech):
    wave, _ = speech
    module = LFCC(CFG)
    out = module(torch.from_numpy(np.stack([wave, wave])))
    assert out.shape == (2, module.n_bins, features.n_frames(len(wave), CFG)) and module.n_bins == 60


def test_deltas_of_a_ramp_are_one():
    ramp = torch.arange(20, dtype=torch.float32).repeat(3, 1)
    d = features.deltas(ramp)
    torch.testing.assert_close(d[:, 2:-2], torch.ones(3, 16))
    assert d[0, 0] < 1.0  # edges are replicated, so the slope flattens there


def test_linear_filterbank_triangles():
    fb = features.linear_filterbank(CFG)
    assert fb.shape == (70, 257) and fb.max() <= 1.0 and (fb >= 0).all()
    peaks = np.argmax(fb, axis=1)
    assert (np.diff(peaks) >= 0).all() and (fb.sum(axis=1) > 0).all()


def test_modules_keep_no_state_in_checkpoints():
    # filterbanks and windows derive from the config, which is saved instead
    assert LogMel(CFG).state_dict() == {} and LFCC(CFG).state_dict() == {}


def test_bad_input():
    with pytest.raises(ValueError, match="empty"):
        LogMel(CFG)(torch.zeros(0))
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        LogMel(CFG)(torch.zeros(2, 2, 100))
    with pytest.raises(TypeError, match="numpy"):
        LogMel(CFG)(np.zeros(100, np.float32))
