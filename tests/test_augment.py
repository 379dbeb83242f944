"""Wave augmentations: lengths, determinism, and that each really does what it claims."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from voicelib.audio import augment
from voicelib.audio.augment import AugmentConfig, Augmenter
from voicelib.files import RunDir
from voicelib.stages import augment as augment_stage

SR = 16000
SAME_LENGTH = ["noise_floor", "gain", "pitch_shift", "reverb", "add_noise", "telephone", "codec"]


def _peak_hz(wave: np.ndarray, sr: int = SR) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.fft.rfftfreq(len(wave), 1 / sr)[np.argmax(spectrum)])


@pytest.mark.parametrize("name", SAME_LENGTH)
def test_transform_keeps_length_is_seeded_and_changes_the_wave(name, speech):
    wave = np.array(speech[0][: SR * 2])
    fn = augment.TRANSFORMS[name]
    a = fn(wave, SR, np.random.default_rng(1))
    b = fn(wave, SR, np.random.default_rng(1))
    assert a.shape == wave.shape and a.dtype == np.float32 and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, wave)


def test_telephone_removes_energy_above_4khz(make_noise):
    noise = make_noise(duration=1.0, amplitude=0.1)
    out = augment.telephone(noise, SR, np.random.default_rng(0), resample_8k=0.0)
    freqs = np.fft.rfftfreq(len(out), 1 / SR)
    power = np.abs(np.fft.rfft(out)) ** 2
    assert power[freqs > 4000].sum() < 1e-3 * power.sum()


def test_pitch_shift_moves_f0_by_the_ratio_and_keeps_length(make_tone):
    tone = make_tone(400.0, duration=1.0)
    out = augment.pitch_shift(tone, SR, np.random.default_rng(0), semitones=(3.0, 3.0))
    assert len(out) == len(tone)
    assert _peak_hz(out[2000:-2000]) == pytest.approx(400.0 * 2 ** (3 / 12), rel=0.02)


def test_time_stretch_changes_duration_not_frequency(make_tone):
    tone = make_tone(500.0, duration=1.0)
    out = augment.time_stretch(tone, SR, np.random.default_rng(0), rate=(1.25, 1.25))
    assert len(out) == pytest.approx(len(tone) / 1.25, abs=200)
    assert _peak_hz(out[1000:-1000]) == pytest.approx(500.0, rel=0.01)
    kept = augment.time_stretch(tone, SR, np.random.default_rng(0), rate=(0.8, 0.8), keep_length=True)
    assert len(kept) == len(tone)


def test_add_noise_hits_the_requested_snr(make_tone):
    tone = make_tone(300.0, duration=1.0)
    out = augment.add_noise(tone, SR, np.random.default_rng(0), snr_db=(10.0, 10.0), colors=("pink",))
    snr = 10 * np.log10(np.mean(tone ** 2) / np.mean((out - tone) ** 2))
    assert snr == pytest.approx(10.0, abs=0.1)


def test_codec_round_trip_stays_aligned(speech):
    wave = np.array(speech[0][:SR])
    out = augment.codec(wave, SR, np.random.default_rng(0), formats=("mp3",))
    assert np.corrcoef(out, wave)[0, 1] > 0.9  # same signal, not shifted


def test_noise_floor_fills_exact_zero_runs_and_gain_never_clips(make_tone):
    wave = np.concatenate([make_tone(200.0), np.zeros(SR, np.float32)])
    assert np.count_nonzero(augment.noise_floor(wave, SR, np.random.default_rng(0))[SR:] == 0) == 0
    loud = augment.gain(wave * 3, SR, np.random.default_rng(0), db=(6.0, 6.0))
    assert np.max(np.abs(loud)) <= 0.99 + 1e-6


def test_random_crop_length_and_tiles_short_clips_without_zeros(make_tone):
    short = make_tone(200.0, duration=0.5) + 0.01
    out = augment.random_crop(short, SR, np.random.default_rng(0), seconds=2.0)
    assert len(out) == 2 * SR and np.count_nonzero(out == 0) == 0
    long = make_tone(200.0, duration=3.0)
    assert len(augment.random_crop(long, SR, np.random.default_rng(0), seconds=1.0)) == SR


def test_spec_augment_masks_and_is_seeded():
    feats = torch.randn(4, 40, 100)
    a = augment.spec_augment(feats, torch.Generator().manual_seed(0), max_time=0.2, max_freq=10)
    b = augment.spec_augment(feats, torch.Generator().manual_seed(0), max_time=0.2, max_freq=10)
    assert a.shape == feats.shape and torch.equal(a, b)
    assert (a != feats).any()
    assert augment.spec_augment(feats[0], torch.Generator().manual_seed(0)).shape == (40, 100)


def test_augmenter_same_rng_same_result_and_config_round_trip(speech):
    cfg = AugmentConfig(p_codec=1.0, p_reverb=1.0)
    wave = np.array(speech[0][:SR])
    a, applied = Augmenter(cfg).apply(wave, SR, np.random.default_rng(5))
    b, _ = Augmenter(cfg).apply(wave, SR, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert {"codec", "reverb"} <= set(applied)
    assert AugmentConfig.from_dict(cfg.to_dict()) == cfg
    none, nothing = Augmenter(AugmentConfig.none()).apply(wave, SR, np.random.default_rng(5))
    assert nothing == [] and np.array_equal(none, wave)
    with pytest.raises(ValueError, match="unknown keys"):
        AugmentConfig.from_dict({"p_flanger": 0.5})
    with pytest.raises(ValueError, match="probability"):
        AugmentConfig(p_gain=1.5)


def _manifest(speech_file) -> pd.DataFrame:
    rows = []
    for label in ("human", "ai"):
        for i in range(2):
            path = speech_file(f"{label}{i}.flac", variant=None)
            rows.append({"path": str(path), "label": label, "language": "english", "speaker": f"{label}{i}",
                         "hash": f"{label}{i}abcdef", "duration": 2.5, "split": "train" if i == 0 else "val"})
    return pd.DataFrame(rows)


def test_the_stage_writes_examples_of_both_classes_and_its_settings(speech_file, tmp_path):
    frame = _manifest(speech_file)
    run = RunDir(tmp_path / "run")
    config = AugmentConfig(p_gain=1.0)
    ex = augment_stage.examples(frame, run, config=config, n=1, seed=0)
    assert sorted(ex["label"]) == ["ai", "human"] and all(ex["transforms"] != "")
    assert run.augment_config.is_file() and (run.augment_examples / "ai_0_after.wav").is_file()
    stored = AugmentConfig.from_dict(augment_stage.stored_config(run))
    assert augment.read_config(run.augment_config) == config == stored


CHANNEL = ["rawboost_convolutive", "rawboost_impulsive", "rawboost_coloured", "band_limit"]


@pytest.mark.parametrize("name", CHANNEL)
def test_channel_transform_keeps_length_is_seeded_and_changes_the_wave(name, speech):
    wave = np.array(speech[0][: SR * 2])
    fn = augment.CHANNEL_TRANSFORMS[name]
    a = fn(wave, SR, np.random.default_rng(3))
    b = fn(wave, SR, np.random.default_rng(3))
    assert a.shape == wave.shape and a.dtype == np.float32 and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, wave, atol=1e-4)
    assert not np.array_equal(a, fn(wave, SR, np.random.default_rng(4)))


def _band_power(wave: np.ndarray, lo: float, hi: float) -> float:
    freqs = np.fft.rfftfreq(len(wave), 1 / SR)
    power = np.abs(np.fft.rfft(wave)) ** 2
    return float(power[(freqs >= lo) & (freqs < hi)].sum() / power.sum())


def test_rawboost_convolutive_recolours_the_spectrum_and_keeps_the_level(make_noise):
    noise = make_noise(duration=1.0, amplitude=0.1)
    out = augment.rawboost_convolutive(noise, SR, np.random.default_rng(0))
    assert np.sqrt(np.mean(out ** 2)) == pytest.approx(np.sqrt(np.mean(noise ** 2)), rel=1e-3)
    bands = [_band_power(out, lo, lo + 1000) for lo in range(0, 8000, 1000)]
    assert max(bands) > 5 * min(bands)  # white noise in, strongly coloured noise out


def test_rawboost_impulsive_touches_a_fraction_of_samples(speech):
    wave = np.array(speech[0][:SR])
    out = augment.rawboost_impulsive(wave, SR, np.random.default_rng(0), max_percent=10.0)
    changed = np.mean(out != wave)
    assert 0.0 < changed <= 0.10
    np.testing.assert_array_equal(out[wave == 0], 0.0)  # signal-dependent: silence stays silent


def test_rawboost_coloured_noise_hits_the_snr(make_tone):
    tone = make_tone(300.0, duration=1.0)
    out = augment.rawboost_coloured(tone, SR, np.random.default_rng(0), snr_db=(15.0, 15.0))
    snr = 10 * np.log10(np.mean(tone ** 2) / np.mean((out - tone) ** 2))
    assert snr == pytest.approx(15.0, abs=0.1)


def test_band_limit_removes_energy_outside_the_drawn_band(make_noise):
    noise = make_noise(duration=1.0, amplitude=0.1)
    low = augment.band_limit(noise, SR, _rng_for(augment.band_limit, "low"), lowpass_hz=(3000.0, 3000.0))
    assert _band_power(low, 4500, 8000) < 1e-2
    high = augment.band_limit(noise, SR, _rng_for(augment.band_limit, "high"), highpass_hz=(500.0, 500.0))
    assert _band_power(high, 0, 200) < 1e-2


def _rng_for(fn, mode: str) -> np.random.Generator:
    """A seed whose first choice is `mode` (band_limit draws its mode first)."""
    for seed in range(100):
        if str(np.random.default_rng(seed).choice(["low", "high", "both"])) == mode:
            return np.random.default_rng(seed)
    raise AssertionError(mode)


def test_codec_at_low_mp3_bitrate_loses_more_and_mulaw_is_band_limited(speech):
    wave = np.array(speech[0][:SR])
    errors = {}
    for kbps in (16, 128):
        out = augment.codec(wave, SR, np.random.default_rng(0), formats=("mp3",), bitrates_kbps=(kbps,))
        assert len(out) == len(wave)
        errors[kbps] = np.mean((out - wave) ** 2)
    assert errors[16] > 2 * errors[128]
    tele = augment.codec(wave, SR, np.random.default_rng(0), formats=("mulaw",))
    assert len(tele) == len(wave) and np.corrcoef(tele, wave)[0, 1] > 0.8
    assert _band_power(tele, 4100, 8000) < 1e-3


def test_channel_fields_default_off_and_leave_old_configs_bit_identical(speech):
    wave = np.array(speech[0][:SR])
    old = AugmentConfig(p_gain=1.0, p_reverb=1.0)
    rng_a, rng_b = np.random.default_rng(9), np.random.default_rng(9)
    a, applied = Augmenter(old).apply(wave, SR, rng_a)
    b, _ = Augmenter(AugmentConfig.from_dict({k: v for k, v in old.to_dict().items()
                                              if not k.startswith(("p_rawboost", "p_band", "codec_bit"))})).apply(
        wave, SR, rng_b)
    np.testing.assert_array_equal(a, b)
    assert rng_a.random() == rng_b.random()  # no extra draws: later crops in data.py are unchanged too
    assert not set(applied) & set(CHANNEL)


def test_channel_robust_preset_applies_the_new_transforms_to_any_clip(speech):
    cfg = AugmentConfig.channel_robust()
    assert AugmentConfig.from_dict(cfg.to_dict()) == cfg
    assert all(getattr(cfg, f"p_{name}") > 0 for name in CHANNEL) and "mulaw" in cfg.codecs
    wave = np.array(speech[0][:SR])
    seen: set[str] = set()
    for seed in range(12):
        out, applied = Augmenter(cfg).apply(wave, SR, np.random.default_rng(seed))
        assert np.isfinite(out).all() and len(out) > 0
        seen |= set(applied)
    assert set(CHANNEL) <= seen
    assert AugmentConfig.channel_robust(p_band_limit=0.0).p_band_limit == 0.0


def test_reverb_adds_a_decaying_tail_of_the_drawn_length(make_tone):
    burst = np.concatenate([make_tone(500.0, duration=0.2), np.zeros(SR, np.float32)])
    out = augment.reverb(burst, SR, np.random.default_rng(0), rt60=(0.5, 0.5), wet=(0.8, 0.8))
    tail = out[int(0.2 * SR):]
    early, late = (np.sqrt(np.mean(tail[int(a * SR):int(b * SR)] ** 2)) for a, b in ((0.0, 0.1), (0.4, 0.5)))
    assert early > 0.01 and late < early / 10  # it rings on after the burst, then dies away
    assert np.sqrt(np.mean(tail[int(0.6 * SR):] ** 2)) < 1e-6  # nothing beyond the 0.5 s impulse response


def test_zero_phase_fir_is_filtfilt_away_from_the_edges(make_noise):
    from scipy import signal

    x = make_noise(duration=1.0, seed=2).astype(np.float64)
    b = augment.notch_filter(np.random.default_rng(1), SR)
    inner = slice(len(b) * 2, -len(b) * 2)
    np.testing.assert_allclose(augment.zero_phase_fir(x, b)[inner], signal.filtfilt(b, 1.0, x)[inner], atol=1e-9)
