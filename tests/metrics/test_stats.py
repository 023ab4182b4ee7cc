import math

import numpy as np
import pytest

from harness.metrics import Interval, MetricError, corpus_ci, mean_ci, paired_delta_ci

VALUES = list(np.random.default_rng(123).uniform(0, 100, size=40))


def test_mean_ci_is_deterministic_and_contains_the_mean():
    a = mean_ci(VALUES, seed=7)
    assert a == mean_ci(VALUES, seed=7)
    assert a != mean_ci(VALUES, seed=8)
    assert a.value == pytest.approx(float(np.mean(VALUES)))
    assert a.low < a.value < a.high
    assert a.n == 40


def test_bca_by_hand():
    """Efron's BCa written out with numpy and a leave-one-out jackknife, on n >= 100 values (normal
    quantiles; below that the expanded t quantile is checked in test_intervals.py)."""
    from statistics import NormalDist

    values = np.random.default_rng(9).lognormal(0, 1, size=120)
    rng = np.random.default_rng(0)
    means = values[rng.integers(0, 120, size=(500, 120))].mean(axis=1)
    estimate = values.mean()
    z0 = NormalDist().inv_cdf((np.sum(means < estimate) + 0.5 * np.sum(means == estimate)) / 500)
    jack = np.array([np.delete(values, i).mean() for i in range(120)])
    d = jack.mean() - jack
    a = np.sum(d**3) / (6 * np.sum(d**2) ** 1.5)
    levels = [NormalDist().cdf(z0 + (z0 + z) / (1 - a * (z0 + z))) for z in (-1.959963984540054, 1.959963984540054)]
    low, high = np.quantile(means, levels)
    got = mean_ci(values, seed=0, n_resamples=500)
    assert got.method == "bca"
    assert (got.low, got.high) == (pytest.approx(low), pytest.approx(high))


def test_paired_delta_of_identical_lists_is_exactly_zero():
    got = paired_delta_ci(VALUES, VALUES)
    assert (got.value, got.low, got.high) == (0.0, 0.0, 0.0)
    assert not got.excludes_zero


def test_paired_delta_detects_a_consistent_gain():
    better = [v + 5.0 for v in VALUES]
    got = paired_delta_ci(better, VALUES)
    assert got.value == pytest.approx(5.0)
    assert got.low == pytest.approx(5.0) and got.high == pytest.approx(5.0)
    noisy = [v + 5.0 + d for v, d in zip(VALUES, np.random.default_rng(1).normal(0, 1, 40))]
    assert paired_delta_ci(noisy, VALUES).excludes_zero


def test_corpus_ci_is_the_percentile_bootstrap_on_the_same_resamples():
    arr = np.asarray(VALUES)
    idx = np.random.default_rng(3).integers(0, 40, size=(1000, 40))
    low, high = np.percentile(arr[idx].mean(axis=1), [2.5, 97.5])
    got = corpus_ci(lambda rows: float(arr[rows].mean()), len(arr), seed=3)
    assert got.method == "percentile" and (got.low, got.high) == (pytest.approx(low), pytest.approx(high))


def test_small_samples():
    empty = mean_ci([])
    assert empty.n == 0 and math.isnan(empty.value)
    assert empty.to_dict()["value"] is None and not empty.excludes_zero
    one = mean_ci([4.0])
    assert (one.value, one.low, one.high, one.n) == (4.0, 4.0, 4.0, 1)
    assert not one.excludes_zero
    assert corpus_ci(lambda idx: 1.0, 0).n == 0


def test_interval_to_dict():
    d = Interval(1.0, 0.5, 1.5, 10).to_dict()
    assert d == {
        "value": 1.0,
        "low": 0.5,
        "high": 1.5,
        "n": 10,
        "confidence": 0.95,
        "method": "percentile",
        "excludes_zero": True,
    }


def test_errors():
    with pytest.raises(MetricError, match="differ in length"):
        paired_delta_ci([1.0, 2.0], [1.0])
    with pytest.raises(MetricError, match="NaN"):
        mean_ci([1.0, float("nan")])
    with pytest.raises(MetricError, match="confidence"):
        mean_ci([1.0, 2.0], confidence=95)
