"""Detector front ends: kinds, shapes, batching, old configs, and values checked against numpy/librosa."""
from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch

from voicelib.audio import features
from voicelib.audio.features import KINDS, FeatureConfig, frontend, n_bins
from voicelib.model.config import ModelConfig

SR = 16000


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_gives_n_bins_by_frames_batched_and_single(kind, speech, make_noise):
    cfg = FeatureConfig(kind=kind)
    module = frontend(cfg)
    waves = np.stack([speech[0][:24000], make_noise(duration=1.5, seed=1)])
    batched = module(torch.from_numpy(waves))
    assert batched.shape == (2, n_bins(cfg), features.n_frames(24000, cfg))
    assert batched.dtype == torch.float32 and torch.isfinite(batched).all()
    for row, one in zip(batched, waves):
        torch.testing.assert_close(row, module(torch.from_numpy(one)), atol=1e-4, rtol=1e-5)


def test_linear_spectrogram_equals_numpy_stft_and_puts_a_tone_in_its_bin(make_tone):
    cfg = FeatureConfig(kind="linear")
    tone = make_tone(1250.0, duration=0.5, amplitude=0.5)
    ours = frontend(cfg)(torch.from_numpy(tone)).numpy()
    ref = np.abs(librosa.stft(tone, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
                              window="hann", center=True, pad_mode="constant")) ** 2
    np.testing.assert_allclose(ours, np.log(ref + cfg.log_eps), atol=2e-3)
    peak_bins = ours[:, 5:-5].argmax(axis=0)
    assert (peak_bins == round(1250.0 * cfg.n_fft / SR)).all()  # 1250 Hz = bin 40 of 257


def test_linear_keeps_the_band_above_mel_fmax_and_pooling_preserves_the_tone(make_tone):
    tone = make_tone(7800.0, duration=0.5)
    full = frontend(FeatureConfig(kind="linear"))(torch.from_numpy(tone)).numpy()
    assert full[:, 5:-5].argmax(axis=0).tolist() == [round(7800 * 512 / SR)] * (full.shape[1] - 10)
    pooled_cfg = FeatureConfig(kind="linear", n_linear_bins=64)
    pooled = frontend(pooled_cfg)(torch.from_numpy(tone)).numpy()
    assert pooled.shape[0] == 64
    assert (pooled[:, 5:-5].argmax(axis=0) == int(7800 / (SR / 2) * 64)).all()


def test_bin_pooling_rows_are_means_that_cover_every_input_bin():
    pool = features.bin_pooling(257, 100)
    np.testing.assert_allclose(pool.sum(axis=1), 1.0, rtol=1e-6)
    assert (pool.sum(axis=0) > 0).all()
    np.testing.assert_allclose(pool @ np.full(257, 3.0), 3.0, rtol=1e-6)


def test_multires_stacks_each_window_on_one_grid(make_tone):
    cfg = FeatureConfig(kind="multires", multires_windows=(256, 1024), multires_bins=50)
    out = frontend(cfg)(torch.from_numpy(make_tone(3000.0, duration=0.5))).numpy()
    assert out.shape[0] == 100 == n_bins(cfg)
    expected = int(3000.0 / (SR / 2) * 50)
    for part in (out[:50], out[50:]):
        assert np.median(part[:, 5:-5].argmax(axis=0)) == pytest.approx(expected, abs=1)
    # the long window resolves the tone more sharply than the short one
    assert out[50 + expected, 10] - np.median(out[50:, 10]) > out[expected, 10] - np.median(out[:50, 10])


def test_cqt_puts_tones_in_their_bins_an_octave_apart_and_keeps_the_frame_grid(make_tone):
    cfg = FeatureConfig(kind="cqt")
    freqs = features.cqt_frequencies(cfg)
    assert len(freqs) == n_bins(cfg) and freqs[0] == cfg.cqt_fmin and freqs[-1] < 0.95 * SR / 2
    module = frontend(cfg)
    peaks = {}
    for f in (220.0, 440.0, 3520.0):
        out = module(torch.from_numpy(make_tone(f, duration=1.0))).numpy()
        assert out.shape == (n_bins(cfg), features.n_frames(SR, cfg))
        peaks[f] = int(np.median(out[:, 40:-40].argmax(axis=0)))
        assert peaks[f] == int(np.argmin(np.abs(freqs - f)))
    assert peaks[440.0] - peaks[220.0] == cfg.cqt_bins_per_octave  # constant Q: one octave, same bin count
    assert peaks[3520.0] - peaks[440.0] == 3 * cfg.cqt_bins_per_octave
    # a 440 Hz tone of amplitude 1 has power (1/2 * mean(hann))^2 = 1/16 in its bin
    out = module(torch.from_numpy(make_tone(freqs[30], duration=1.0, amplitude=1.0))).numpy()
    assert np.exp(out[30, 50]) == pytest.approx(1 / 16, rel=0.05)


def test_lfcc_front_end_is_the_baseline_lfcc(speech):
    cfg = FeatureConfig(kind="lfcc")
    np.testing.assert_allclose(frontend(cfg)(torch.from_numpy(speech[0])).numpy(), features.lfcc(speech[0], cfg),
                               atol=1e-5)


def test_logmel_is_unchanged_by_the_new_fields(speech):
    wave = torch.from_numpy(speech[0])
    torch.testing.assert_close(frontend(FeatureConfig())(wave), features.LogMel(FeatureConfig())(wave))
    assert n_bins(FeatureConfig()) == 80


def test_old_configs_load_as_logmel_with_cmvn_and_bad_values_are_refused():
    old = {k: v for k, v in FeatureConfig().to_dict().items()
           if k not in ("kind", "n_linear_bins", "multires_windows", "multires_bins", "cqt_fmin", "cqt_bins_per_octave",
                        "cmvn")}
    cfg = FeatureConfig.from_dict(old)
    assert cfg.kind == "logmel" and cfg.cmvn is True
    multi = FeatureConfig(kind="multires", cmvn=False)
    round_trip = FeatureConfig.from_dict({**multi.to_dict(), "multires_windows": list(multi.multires_windows)})
    assert round_trip == multi and hash(round_trip) == hash(multi)
    with pytest.raises(ValueError, match="kind"):
        FeatureConfig(kind="mfcc")
    with pytest.raises(ValueError, match="n_linear_bins"):
        FeatureConfig(kind="linear", n_linear_bins=1000)


def test_front_ends_by_name_give_their_settings_and_a_bad_name_says_which_exist(make_tone):
    assert FeatureConfig.from_dict("linear80") == FeatureConfig(kind="linear", n_linear_bins=80)
    assert FeatureConfig.from_dict("lfcc") == FeatureConfig(kind="lfcc")
    cfg = ModelConfig.from_dict({"width": 8, "features": "linear80"})
    assert n_bins(cfg.features) == 80 and ModelConfig.from_dict(cfg.to_dict()) == cfg  # saved as settings
    feats = frontend(cfg.features)(torch.from_numpy(make_tone(6000.0, duration=1.0))[None])
    assert feats.shape[1] == 80 and int(feats[0].mean(dim=1).argmax()) == 192 * 80 // 257  # 6 kHz: STFT bin 192
    with pytest.raises(ValueError, match="front end 'mel' unknown; use one of logmel, linear, lfcc"):
        FeatureConfig.from_dict("mel")
