"""Issue #27, point 6: intervals that hold on small and skewed samples, with n, and Holm.

Exact coverages are computed by enumerating the binomial distribution; the others by small
simulations (a few hundred samples, about a second). Reference values come from tables or are
worked out here by hand, never from harness's own functions.
"""

import math

import numpy as np
import pytest

from harness.metrics import mean_ci, paired_delta_ci
from harness.metrics.aggregate import Scorer, aggregate
from harness.metrics.intervals import clopper_pearson, holm, mcnemar_p_value, t_quantile


def _binomial_pmf(k: int, n: int, p: float) -> float:
    return math.comb(n, k) * p**k * (1 - p) ** (n - k)


def _percentile_interval(values, seed=0, resamples=1000):
    """What harness reported before: the plain percentile bootstrap."""
    idx = np.random.default_rng(seed).integers(0, len(values), size=(resamples, len(values)))
    return np.percentile(np.asarray(values)[idx].mean(axis=1), [2.5, 97.5])


def test_exact_interval_for_a_proportion_matches_clopper_pearson_by_hand():
    # With 0 of n the exact upper bound solves (1 - p)^n = 0.025.
    assert clopper_pearson(0, 20, 0.95) == (0.0, pytest.approx(1 - 0.025 ** (1 / 20), abs=1e-9))
    assert clopper_pearson(20, 20, 0.95) == (pytest.approx(0.025 ** (1 / 20), abs=1e-9), 1.0)
    low, high = clopper_pearson(3, 20, 0.95)
    # The defining tail equations, summed directly.
    assert sum(_binomial_pmf(k, 20, low) for k in range(3, 21)) == pytest.approx(0.025, abs=1e-9)
    assert sum(_binomial_pmf(k, 20, high) for k in range(4)) == pytest.approx(0.025, abs=1e-9)
    # Large n does not underflow.
    low, high = clopper_pearson(2900, 5774, 0.95)
    assert low < 2900 / 5774 < high and high - low == pytest.approx(2 * 1.96 * math.sqrt(0.25 / 5774), rel=0.02)


def test_exact_match_column_at_five_percent_and_n_20_covers():
    # Coverage over every possible outcome, weighted by its probability: no simulation error.
    n, p = 20, 0.05
    coverage = before = 0.0
    for k in range(n + 1):
        values = [100.0] * k + [0.0] * (n - k)
        interval = mean_ci(values, full_score=100.0)
        assert interval.method == "exact" and interval.n == n
        coverage += _binomial_pmf(k, n, p) * (interval.low <= 100 * p <= interval.high)
        low, high = _percentile_interval(values)
        before += _binomial_pmf(k, n, p) * (low <= 100 * p <= high)
    assert coverage >= 0.95
    assert before < 0.70  # the percentile bootstrap's 0.66


def test_all_zero_column_is_not_zero_width():
    interval = mean_ci([0.0] * 20, full_score=100.0)
    assert (interval.low, interval.high) == (0.0, pytest.approx(100 * (1 - 0.025 ** (1 / 20))))


def _coverage(draw, truth, n, reps=200, **kwargs):
    rng = np.random.default_rng(5)
    hits = before = 0
    for i in range(reps):
        values = draw(rng, n)
        interval = mean_ci(values, seed=i, **kwargs)
        hits += interval.low <= truth <= interval.high
        low, high = _percentile_interval(values, seed=i)
        before += low <= truth <= high
    return hits / reps, before / reps


def test_skewed_small_sample_coverage_improves():
    # Log-normal (sigma 1.5, mean e^1.125) at n = 20: the percentile interval covers about 0.76.
    after, before = _coverage(lambda rng, n: rng.lognormal(0, 1.5, n), math.exp(1.125), 20)
    assert after >= 0.80 and after - before >= 0.05


def test_zero_inflated_f1_like_column_at_n_98_covers():
    # 70 % zeros, the rest uniform on 0-100: the shape of F1 on a hard QA set.
    after, _ = _coverage(lambda rng, n: np.where(rng.random(n) < 0.7, 0.0, rng.uniform(0, 100, n)), 15.0, 98)
    assert after >= 0.93


def test_paired_exact_match_delta_coverage_and_mcnemar():
    # Two models each right 5 % of the time, independently, at n = 20: the true delta is 0.
    rng = np.random.default_rng(11)
    hits = 0
    for i in range(300):
        a = 100.0 * (rng.random(20) < 0.05)
        b = 100.0 * (rng.random(20) < 0.05)
        interval = paired_delta_ci(a, b, full_score=100.0, seed=i)
        assert interval.method == "newcombe"
        hits += interval.low <= 0 <= interval.high
    assert hits / 300 >= 0.95
    # Exact McNemar by hand: 1 vs 8 discordant pairs -> 2 * P(X <= 1 | 9, 1/2) = 2 * 10 / 512.
    a = np.array([True] * 1 + [False] * 8 + [True] * 5)
    b = np.array([False] * 1 + [True] * 8 + [True] * 5)
    assert mcnemar_p_value(a, b) == pytest.approx(20 / 512)


def test_t_quantile_matches_the_table():
    for dof, value in ((1, 12.7062), (2, 4.3027), (5, 2.5706), (19, 2.0930), (97, 1.9847)):
        assert t_quantile(0.975, dof) == pytest.approx(value, abs=2e-3 if dof < 10 else 1e-4)


def test_holm_by_hand():
    # Sorted: 0.005 x4 = 0.02, 0.01 x3 = 0.03, 0.03 x2 = 0.06, 0.04 x1 -> kept at 0.06 (monotone).
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def _records(values, key="m"):
    return [{"id": str(i), "metrics": {key: float(v)}} for i, v in enumerate(values)]


def test_aggregate_marks_only_what_survives_holm_and_records_n():
    rng = np.random.default_rng(2)
    base = rng.uniform(0, 100, 60)
    scorers = [Scorer(f"m{j}", per_sample=lambda r, j=j: r["metrics"][f"m{j}"]) for j in range(5)]

    def records(shift_of):
        return [
            {"id": str(i), "metrics": {f"m{j}": float(base[i] + shift_of(j, i)) for j in range(5)}} for i in range(60)
        ]

    # m0 gains clearly; m1..m4 gain by noise with a nominal p-value somewhere near 0.05.
    noise = rng.normal(0, 20, (5, 60))
    runs = {"base": records(lambda j, i: 0.0), "a": records(lambda j, i: (8.0 if j == 0 else 4.5) + noise[j, i])}
    plain = aggregate(runs, scorers, "base", correction="none")
    corrected = aggregate(runs, scorers, "base")
    assert corrected["bootstrap"]["correction"] == "holm" and corrected["bootstrap"]["comparisons"] == 5
    for label in plain["deltas"]["a"]:
        entry = corrected["deltas"]["a"][label]
        assert entry["n"] == 60 and entry["p_adjusted"] >= entry["p_value"]
        assert entry["improved"] == (entry["p_adjusted"] < 0.05)
        assert plain["deltas"]["a"][label]["improved"] == (plain["deltas"]["a"][label]["p_value"] < 0.05)
    assert corrected["deltas"]["a"]["m0"]["improved"]
    assert sum(e["improved"] for e in corrected["deltas"]["a"].values()) <= sum(
        e["improved"] for e in plain["deltas"]["a"].values()
    )
    assert all("p_value" not in e and e["n"] == 60 for e in corrected["metrics"]["a"].values())


def test_per_sample_scores_are_averaged_at_full_precision():
    from harness.metrics.aggregate import score_record

    values = [100 / 3, 200 / 3, 100 / 7, 1e-7]
    scorers = [Scorer("m", per_sample=lambda r: r["v"])]
    records = [{"id": str(i), "v": v} for i, v in enumerate(values)]
    for r in records:
        r["metrics"] = score_record(r, scorers)
    assert [r["metrics"]["m"] for r in records] == values  # not rounded to 6 decimals
    mean = aggregate({"base": records}, scorers, None)["metrics"]["base"]["m"]["value"]
    assert mean == pytest.approx(math.fsum(values) / 4, rel=1e-15, abs=0)


def test_table_shows_n_and_says_what_the_marks_mean():
    from harness.runs.summary import results_table

    base = [{"id": str(i), "metrics": {"m": float(v)}} for i, v in enumerate([0, 100] * 10)]
    better = [{"id": str(i), "metrics": {"m": 100.0}} for i in range(20)]
    results = aggregate({"base": base, "a": better}, [Scorer("m", per_sample=lambda r: r["metrics"]["m"])], "base")
    results.update(suite="s", n_samples=20)
    table = results_table(results)
    assert "after Holm's correction over 1 comparisons" in table
    assert "50.00 [27.20, 72.80] n=20" in table  # Clopper-Pearson for 10 of 20, worked out by hand
    assert "▲" in table
