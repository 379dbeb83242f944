"""Score metrics on hand-made scores whose answers are known."""
import numpy as np
import pytest

from voicelib import metrics


def test_eer_zero_when_classes_separate():
    rate, threshold = metrics.eer([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert rate == 0.0
    assert 0.2 < threshold <= 0.8


def test_eer_half_when_scores_are_identical():
    assert metrics.eer([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5])[0] == pytest.approx(0.5)


def test_eer_and_auc_on_one_swapped_pair():
    # one human above one AI among three of each: FPR = FNR = 1/3 at the crossing
    labels, scores = [0, 0, 0, 1, 1, 1], [0.1, 0.2, 0.6, 0.4, 0.8, 0.9]
    assert metrics.eer(labels, scores)[0] == pytest.approx(1 / 3)
    assert metrics.roc_auc(labels, scores) == pytest.approx(8 / 9)


def test_auc_counts_ties_as_half():
    assert metrics.roc_auc([0, 1], [0.3, 0.3]) == pytest.approx(0.5)


def test_binary_metrics_confusion_and_rates():
    m = metrics.binary_metrics([0, 0, 0, 1, 1, 1], [0.1, 0.2, 0.6, 0.4, 0.8, 0.9], 0.5)
    assert m["confusion"] == {"tn": 2, "fp": 1, "fn": 1, "tp": 2}
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["precision"] == m["recall"] == m["f1"] == pytest.approx(2 / 3)
    assert m["fpr"] == m["fnr"] == pytest.approx(1 / 3)


def test_compute_metrics_keeps_the_given_threshold():
    m = metrics.compute_metrics([0, 1, 0, 1], [0.1, 0.9, 0.4, 0.6], threshold=0.95)
    assert m["threshold"] == 0.95 and m["recall"] == 0.0 and m["eer"] == 0.0 and m["n"] == 4


def test_metrics_refuse_one_class():
    with pytest.raises(ValueError, match="both classes"):
        metrics.eer([1, 1], [0.2, 0.3])


def _noisy_scores(n=200, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.r_[np.zeros(n), np.ones(n)].astype(int)
    return labels, rng.normal(labels * 1.0, 1.0)


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    labels, scores = _noisy_scores()
    a = metrics.bootstrap_ci(labels, scores, threshold=0.5, seed=3, n_boot=200)
    b = metrics.bootstrap_ci(labels, scores, threshold=0.5, seed=3, n_boot=200)
    c = metrics.bootstrap_ci(labels, scores, threshold=0.5, seed=4, n_boot=200)
    assert a == b and a != c
    point = metrics.compute_metrics(labels, scores, threshold=0.5)
    for key in ("eer", "roc_auc", "accuracy"):
        lo, hi = a[key]
        assert lo <= point[key] <= hi and hi - lo > 0


def test_cluster_bootstrap_is_wider_when_clusters_share_scores():
    # ten speakers per class whose clips all score alike: clip resampling overstates certainty
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], 200)
    speaker = np.repeat(np.arange(20), 20)
    scores = rng.normal(0, 1, 20)[speaker] + labels * 1.0 + rng.normal(0, 0.05, 400)
    clip = metrics.bootstrap_ci(labels, scores, threshold=0.5, seed=0, n_boot=200)
    grouped = metrics.bootstrap_ci(labels, scores, threshold=0.5, seed=0, n_boot=200, clusters=speaker)
    width = lambda ci: ci["eer"][1] - ci["eer"][0]  # noqa: E731
    assert width(grouped) > 2 * width(clip)


def test_calibration_error_zero_for_perfect_probabilities_and_large_when_overconfident():
    labels = np.r_[np.zeros(50), np.ones(50)]
    assert metrics.expected_calibration_error(labels, labels) == 0.0
    rng = np.random.default_rng(0)
    coin = rng.integers(0, 2, 1000)
    assert metrics.expected_calibration_error(coin, np.full(1000, 0.99)) > 0.4


def test_platt_recovers_a_known_logistic():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 2, 5000)
    y = (rng.random(5000) < metrics.apply_platt(x, 1.5, -0.5)).astype(int)
    a, b = metrics.fit_platt(y, x)
    assert a == pytest.approx(1.5, abs=0.15) and b == pytest.approx(-0.5, abs=0.15)


def test_inconclusive_band_is_the_smallest_that_makes_decisions_right():
    from voicelib.metrics import inconclusive_band

    probs = np.array([0.05, 0.1, 0.45, 0.55, 0.9, 0.95])
    labels = np.array([0, 0, 1, 0, 1, 1])  # the two clips nearest the threshold are wrong
    assert inconclusive_band(labels, probs, 0.5) == pytest.approx(0.06)  # excludes 0.45 and 0.55 (0.05 away)
    assert inconclusive_band(labels[[0, 1, 4, 5]], probs[[0, 1, 4, 5]], 0.5) == pytest.approx(0.02)
    assert inconclusive_band(1 - labels, probs, 0.5) == 0.25  # never right: the widest band
