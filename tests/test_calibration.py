"""Calibration by hand-made numbers: bins, ECE/MCE, NLL and the fitted temperature, each against a value
worked out here (no training: the mutation bench runs these for every mutant of training/calibration.py).

Run: .venv/bin/python -m pytest tests/test_calibration.py -q
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax

from pipeline.training import calibration

pytestmark = pytest.mark.filterwarnings("error")  # a log of 0, an empty mean or an unknown solver option fails

# four images, two classes: confidences 0.9 (right), 0.9 (wrong), 0.6 (right), 1/15 exactly on an edge
PROBS = np.array([[0.9, 0.1], [0.1, 0.9], [0.6, 0.4], [0.5, 0.5]])
LABELS = np.array([0, 0, 0, 1])


def test_bins_hold_confidences_in_lower_exclusive_upper_inclusive():
    report = calibration.reliability(PROBS, LABELS, bins=10)
    counts = [b["count"] for b in report["bins"]]
    # 0.5 is the upper edge of bin 4 (0.4, 0.5]; 0.6 of bin 5 (0.5, 0.6]; 0.9 of bin 8 (0.8, 0.9]
    assert counts == [0, 0, 0, 0, 1, 1, 0, 0, 2, 0]
    assert report["n"] == 4 and len(report["bins"]) == 10
    assert report["bins"][0] == {"lower": 0.0, "upper": 0.1, "count": 0, "confidence": None, "accuracy": None}
    assert report["bins"][9]["upper"] == 1.0
    nine = report["bins"][8]
    assert nine["confidence"] == pytest.approx(0.9) and nine["accuracy"] == 0.5
    # argmax of a tie is class 0, and the label is 1: wrong
    assert report["bins"][4]["accuracy"] == 0.0 and report["bins"][5]["accuracy"] == 1.0


def test_ece_weights_each_bin_by_its_share_and_mce_is_the_worst_gap():
    report = calibration.reliability(PROBS, LABELS, bins=10)
    # gaps: bin 4 |0 - 0.5| = 0.5 (1 image), bin 5 |1 - 0.6| = 0.4 (1), bin 8 |0.5 - 0.9| = 0.4 (2)
    assert report["ece"] == pytest.approx((0.5 + 0.4 + 2 * 0.4) / 4)
    assert report["mce"] == pytest.approx(0.5)


def test_zero_and_one_confidence_land_in_the_first_and_last_bins():
    probs = np.array([[0.0, 0.0], [1.0, 0.0]])  # a degenerate row's max is 0: it belongs to the first bin
    report = calibration.reliability(probs, np.array([1, 0]), bins=5)
    assert [b["count"] for b in report["bins"]] == [1, 0, 0, 0, 1]
    assert report["ece"] == pytest.approx(0.0) and report["mce"] == pytest.approx(0.0)


def test_the_default_is_fifteen_bins_and_an_empty_split_has_no_error():
    assert len(calibration.reliability(PROBS, LABELS)["bins"]) == calibration.BINS == 15
    empty = calibration.reliability(np.zeros((0, 3)), np.zeros(0, dtype=int))
    assert (empty["ece"], empty["mce"], empty["n"]) == (0.0, 0.0, 0)


def test_nll_is_the_mean_negative_log_probability_of_the_true_class():
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    labels = np.array([0, 0, 1])
    expected = -np.mean(np.log([softmax([2, 0])[0], softmax([0, 1])[0], 0.5]))
    assert calibration.nll(logits, labels) == pytest.approx(expected, rel=1e-12)
    expected_t = -np.mean(np.log([softmax([1, 0])[0], softmax([0, 0.5])[0], 0.5]))
    assert calibration.nll(logits, labels, temperature=2.0) == pytest.approx(expected_t, rel=1e-12)


def test_the_fitted_temperature_is_the_nll_minimum():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, size=400)
    logits = rng.normal(size=(400, 5))
    logits[np.arange(400), labels] += 1.0
    overconfident = logits * 4.0  # the honest scale divided by 4: the best temperature is near 4
    t = calibration.fit_temperature(overconfident, labels)
    grid = np.exp(np.linspace(np.log(0.05), np.log(20), 4001))
    best = grid[np.argmin([calibration.nll(overconfident, labels, g) for g in grid])]
    assert t == pytest.approx(best, rel=2e-3) and 3.0 < t < 5.5
    assert calibration.nll(overconfident, labels, t) < calibration.nll(overconfident, labels, 1.0)


def test_no_labels_or_nothing_better_than_raw_keeps_one():
    assert calibration.fit_temperature(np.zeros((0, 3)), np.zeros(0, dtype=int)) == 1.0
    # all-equal logits: every temperature gives the same NLL, so the raw model stands
    assert calibration.fit_temperature(np.zeros((10, 3)), np.zeros(10, dtype=int)) == 1.0


def test_a_temperature_beyond_the_range_is_clipped_to_it():
    labels = np.array([0, 1] * 50)
    logits = np.where(np.eye(2)[labels] == 1, 1e-4, 0.0)  # nearly uninformative and always right: T wants 0
    t = calibration.fit_temperature(logits, labels)
    assert t == pytest.approx(calibration.TEMPERATURE_RANGE[0], rel=1e-3)


def test_scaled_divides_logits_and_takes_probabilities_by_their_logs():
    logits = np.array([[2.0, 0.0, -1.0]])
    out = calibration.scaled(logits, 2.0)
    assert out.dtype == np.float32 and out == pytest.approx(softmax(logits / 2.0, axis=1), rel=1e-6)
    probs = softmax(logits, axis=1)
    assert calibration.scaled(probs, 2.0, probabilities=True) == pytest.approx(softmax(logits / 2.0, axis=1), rel=1e-5)
    zero = calibration.scaled(np.array([[1.0, 0.0]]), 1.0, probabilities=True)  # log(0) is clipped, not -inf
    assert np.isfinite(zero).all() and zero[0, 0] == pytest.approx(1.0)


def test_the_report_holds_both_sides_of_the_temperature():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, size=300)
    logits = rng.normal(size=(300, 3)) * 0.5
    logits[np.arange(300), labels] += 0.8
    logits *= 5.0
    report = calibration.calibration(logits[:150], labels[:150], logits[150:], labels[150:])
    t = calibration.fit_temperature(logits[150:], labels[150:])
    raw = calibration.reliability(softmax(logits[:150], axis=1), labels[:150])
    after = calibration.reliability(softmax(logits[:150] / t, axis=1), labels[:150])
    assert report["temperature"] == t and t > 1.5
    assert report["ece"] == pytest.approx(raw["ece"], abs=1e-6) and report["mce"] == pytest.approx(raw["mce"], abs=1e-6)
    assert report["ece_after_temperature"] == pytest.approx(after["ece"], abs=1e-6)
    assert report["mce_after_temperature"] == pytest.approx(after["mce"], abs=1e-6)
    assert [b["count"] for b in report["bins_after_temperature"]] == [b["count"] for b in after["bins"]]
    assert report["val_nll"] == pytest.approx(calibration.nll(logits[150:], labels[150:]))
    assert report["val_nll_after_temperature"] == pytest.approx(calibration.nll(logits[150:], labels[150:], t))
    assert report["val_nll_after_temperature"] < report["val_nll"]
    assert report["n"] == 150 and "15 equal-width bins" in report["binning"]


def test_without_a_validation_split_the_temperature_stays_one():
    logits = np.array([[3.0, 0.0], [0.0, 3.0]])
    for val_logits, val_labels in ((None, None), (np.zeros((0, 2)), np.zeros(0, dtype=int))):
        report = calibration.calibration(logits, np.array([0, 0]), val_logits, val_labels)
        assert report["temperature"] == 1.0 and report["val_nll"] is None
        assert report["val_nll_after_temperature"] is None
        assert report["ece_after_temperature"] == pytest.approx(report["ece"])


def test_any_float_input_is_computed_in_float64():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(200, 4)).astype(np.float16)
    labels = rng.integers(0, 4, 200)
    wide = logits.astype(np.float64)
    probs16 = softmax(wide, axis=1).astype(np.float16)
    a, b = calibration.reliability(probs16, labels), calibration.reliability(probs16.astype(np.float64), labels)
    assert a["ece"] == b["ece"] and a["bins"] == b["bins"]
    assert calibration.nll(logits, labels, 1.3) == calibration.nll(wide, labels, 1.3)
    assert np.array_equal(calibration.scaled(logits, 0.7), calibration.scaled(wide, 0.7))
    assert np.array_equal(calibration.scaled(probs16, 0.7, probabilities=True),
                          calibration.scaled(probs16.astype(np.float64), 0.7, probabilities=True))


def test_a_confidence_rounded_above_one_is_counted_in_the_last_bin():
    probs = np.array([[1.0000001, 0.0], [0.3, 0.7]], dtype=np.float64)  # a float32 softmax can sum past 1
    report = calibration.reliability(probs, np.array([0, 1]), bins=5)
    assert [b["count"] for b in report["bins"]] == [0, 0, 0, 1, 1]


def test_one_image_is_its_own_gap():
    report = calibration.reliability(np.array([[0.7, 0.3]]), np.array([0]))
    assert report["ece"] == pytest.approx(0.3) and report["mce"] == pytest.approx(0.3) and report["n"] == 1


def test_one_validation_image_is_enough_to_fit():
    # a right answer is always more likely when sharper: the fit goes to the range's low end
    logits, labels = np.array([[2.0, 0.0]]), np.array([0])
    t = calibration.fit_temperature(logits, labels)
    assert t < 0.1 and calibration.nll(logits, labels, t) < calibration.nll(logits, labels) / 1000
