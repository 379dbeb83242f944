"""Shortcut features and probe on synthetic signals; the LFCC-GMM baseline on two clearly different classes."""
import numpy as np
import pytest

from voicelib.evaluation import baselines
from voicelib.model.gmm import LfccGmm

SR = 16000


def _babble(rng, seconds=1.0):
    """Amplitude-modulated noise: speech-like level changes, no silence and no exact zeros."""
    n = int(SR * seconds)
    envelope = 0.3 + 0.7 * np.abs(np.sin(2 * np.pi * rng.uniform(2, 5) * np.arange(n) / SR + rng.uniform(0, 6)))
    return (rng.normal(0, 0.1, n) * envelope).astype(np.float32)


def test_leading_digital_silence_is_measured():
    rng = np.random.default_rng(0)
    wave = np.r_[np.zeros(SR, np.float32), _babble(rng, 2.0)]
    f = baselines.shortcut_features(wave, SR)
    assert f["duration_s"] == pytest.approx(3.0)
    assert f["leading_silence_s"] == pytest.approx(1.0, abs=0.011)
    assert f["trailing_silence_s"] == pytest.approx(0.0, abs=0.011)
    assert f["zero_fraction"] == pytest.approx(1 / 3, abs=1e-3)
    assert f["longest_zero_run_s"] == pytest.approx(1.0, abs=1e-3)


def test_level_dc_and_band_cues():
    t = np.arange(SR) / SR
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t) + 0.1).astype(np.float32)
    f = baselines.shortcut_features(tone, SR)
    assert f["dc_offset"] == pytest.approx(0.1, abs=1e-3)
    assert f["rms_dbfs"] == pytest.approx(20 * np.log10(np.sqrt(0.125 + 0.01)), abs=0.05)
    assert 900 < f["rolloff_hz"] < 1100
    noise = np.random.default_rng(0).normal(0, 0.1, SR).astype(np.float32)
    assert baselines.shortcut_features(noise, SR)["bandwidth_hz"] > 5 * f["bandwidth_hz"]


def test_empty_wave_is_refused():
    with pytest.raises(ValueError, match="empty"):
        baselines.shortcut_features(np.zeros(0, np.float32), SR)


def _probe_data(rng, n, padded_ai):
    waves, labels = [], []
    for i in range(2 * n):
        label = i % 2
        wave = _babble(rng, rng.uniform(1.0, 2.0))
        if padded_ai and label == 1:  # the "TTS" pads with digital silence
            wave = np.r_[np.zeros(int(SR * rng.uniform(0.2, 0.5)), np.float32), wave]
        waves.append(wave)
        labels.append(label)
    return baselines.shortcut_matrix(waves, SR), np.array(labels)


@pytest.mark.parametrize("padded_ai", [True, False])
def test_probe_warns_only_when_a_shortcut_exists(padded_ai):
    rng = np.random.default_rng(7)
    x_train, y_train = _probe_data(rng, 30, padded_ai)
    x_test, y_test = _probe_data(rng, 40, padded_ai)
    probe = baselines.ShortcutProbe(seed=0).fit(x_train, y_train)
    result = probe.verdict(y_test, probe.score(x_test))
    if padded_ai:
        assert result["eer"] < 0.1 and result["warning"] is not None
        assert list(result["weights"])[0] in {"leading_silence_s", "zero_fraction", "longest_zero_run_s"}
        assert "SHORTCUT WARNING" in result["warning"]
    else:
        assert result["eer"] > 0.35 and result["warning"] is None


def test_lfcc_gmm_separates_tones_from_noise_on_held_out_clips(make_tone, make_noise):
    rng = np.random.default_rng(0)

    def clips(seed0):
        tones = [make_tone(float(rng.uniform(200, 2000)), duration=0.5, amplitude=float(rng.uniform(0.1, 0.5)))
                 for _ in range(6)]
        noises = [make_noise(duration=0.5, amplitude=float(rng.uniform(0.05, 0.3)), seed=seed0 + i) for i in range(6)]
        return tones + noises, [0] * 6 + [1] * 6

    train_w, train_y = clips(0)
    test_w, test_y = clips(100)
    gmm = LfccGmm(n_components=4, seed=0).fit(train_w, train_y)
    scores = gmm.score(test_w)
    assert scores.shape == (12,)
    assert scores[6:].min() > scores[:6].max()  # every noise clip scores above every tone clip
    again = LfccGmm(n_components=4, seed=0).fit(train_w, train_y).score(test_w)
    np.testing.assert_allclose(scores, again)


def test_lfcc_gmm_refuses_one_class(make_noise):
    with pytest.raises(ValueError, match="human and AI"):
        LfccGmm(n_components=2).fit([make_noise(), make_noise(seed=1)], [1, 1])


def test_lfcc_gmm_fits_clips_with_long_digital_silence(make_tone, make_noise):
    # runs of exact zeros gave identical LFCC frames that collapsed a mixture component (real Hindi TTS clips)
    rng = np.random.default_rng(3)
    silence = np.zeros(16000 * 2, dtype=np.float32)
    tones = [np.r_[silence, make_tone(float(f), duration=1.0), silence] for f in rng.uniform(200, 800, 6)]
    noises = [np.r_[silence, make_noise(duration=1.0, seed=s)] for s in range(6)]
    gmm = LfccGmm(n_components=8, seed=0).fit(tones[:4] + noises[:4], [1] * 4 + [0] * 4)
    scores = gmm.score(tones[4:] + noises[4:])
    assert np.isfinite(scores).all()
    assert scores[:2].min() > scores[2:].max()


def test_lfcc_gmm_novelty_flags_a_kind_of_sound_neither_class_had(make_tone, make_noise):
    # the LLR needs the AI class to resemble the new sound; novelty asks only whether it is unlike the human class
    rng = np.random.default_rng(4)
    human = [make_noise(duration=0.5, amplitude=float(rng.uniform(0.05, 0.3)), seed=s) for s in range(10)]
    ai = [make_tone(float(f), duration=0.5) for f in rng.uniform(200, 400, 6)]  # low tones only
    gmm = LfccGmm(n_components=4, seed=0).fit(human[:6] + ai, [0] * 6 + [1] * 6)
    unheard = [make_tone(float(f), duration=0.5) + 0.2 * make_tone(float(3 * f), duration=0.5)
               for f in rng.uniform(2500, 3500, 4)]  # high harmonic tones: a family training never had
    novelty = gmm.novelty(human[6:] + unheard)
    assert novelty[4:].min() > novelty[:4].max()  # every unheard clip is less human-like than every held-out human
    ll = gmm.class_logliks(human[6:])
    np.testing.assert_allclose(gmm.score(human[6:]), ll[:, 1] - ll[:, 0])
    np.testing.assert_allclose(novelty[:4], -ll[:, 0])
