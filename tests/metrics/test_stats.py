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


def test_percentile_bootstrap_by_hand():
    # Same draws, written out with numpy directly.
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 40, size=(500, 40))
    means = np.asarray(VALUES)[idx].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    got = mean_ci(VALUES, seed=0, n_resamples=500)
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


def test_corpus_ci_uses_the_same_resamples_as_mean_ci():
    arr = np.asarray(VALUES)
    assert corpus_ci(lambda idx: float(arr[idx].mean()), len(arr), seed=3) == mean_ci(VALUES, seed=3)


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
        "value": 1.0, "low": 0.5, "high": 1.5, "n": 10, "confidence": 0.95, "excludes_zero": True,
    }


def test_errors():
    with pytest.raises(MetricError, match="differ in length"):
        paired_delta_ci([1.0, 2.0], [1.0])
    with pytest.raises(MetricError, match="NaN"):
        mean_ci([1.0, float("nan")])
    with pytest.raises(MetricError, match="confidence"):
        mean_ci([1.0, 2.0], confidence=95)
