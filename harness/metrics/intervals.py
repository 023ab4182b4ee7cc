"""Interval formulas that hold on small and skewed samples, and Holm's correction.

* Clopper-Pearson's exact interval for a proportion (a column whose every value is 0 or the full
  score, such as exact match): its coverage is never below the nominal level, at any n and any
  rate, where a bootstrap interval of a 5 % event rate at n = 20 is often [0, 0].
* For the paired difference of two such columns, Newcombe's interval (his method 10: Wilson
  intervals of both rates combined with their correlation) and the exact McNemar test.
* BCa (bias-corrected and accelerated, Efron 1987) from bootstrap replicates of a mean: the
  acceleration comes from the jackknife, which for a mean is the skewness of the values, so
  skewed columns (ROUGE, F1 with many zeros, log-normal costs) get an interval that leans the
  way the sampling distribution does.  For n below `SMALL_N` the normal quantile is widened to
  Student's t with n - 1 degrees of freedom, times sqrt(n / (n - 1)) (Hesterberg's "expanded"
  bootstrap), because the bootstrap's variance is biased low by (n - 1) / n.
* `bootstrap_p_value` inverts the BCa interval: the smallest 1 - confidence at which it excludes
  0, so a p-value and an interval from the same replicates never disagree.
* `holm` adjusts a family of p-values (every metric of every compared column at once).

Pure Python and numpy: no scipy.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

_NORMAL = NormalDist()
SMALL_N = 100


def wilson(successes: int, n: int, confidence: float) -> tuple[float, float]:
    """Wilson's score interval for a proportion, as fractions."""
    z = _NORMAL.inv_cdf(0.5 + confidence / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # At 0 or n successes the exact bound is 0 or 1; rounding must not leave it a hair off.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def _log_binomial_pmf(n: int, p: float) -> np.ndarray:
    k = np.arange(n + 1)
    log_fact = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1)))])
    with np.errstate(divide="ignore", invalid="ignore"):
        log_p = np.where(k > 0, k * math.log(p), 0.0) if p > 0 else np.where(k == 0, 0.0, -np.inf)
        log_q = np.where(n - k > 0, (n - k) * math.log1p(-p), 0.0) if p < 1 else np.where(k == n, 0.0, -np.inf)
    return log_fact[n] - log_fact[k] - log_fact[n - k] + log_p + log_q


def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed in log space so that large n does not underflow."""
    if k < 0:
        return 0.0
    return float(min(1.0, np.exp(_log_binomial_pmf(n, p)[: k + 1]).sum()))


def clopper_pearson(successes: int, n: int, confidence: float) -> tuple[float, float]:
    """The exact (Clopper-Pearson) interval for a proportion, as fractions, by bisection."""
    alpha = (1 - confidence) / 2

    def solve(target, lo=0.0, hi=1.0):  # target(p) is decreasing in p
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if target(mid) > 0 else (lo, mid)
        return (lo + hi) / 2

    low = 0.0 if successes == 0 else solve(lambda p: alpha - (1 - binomial_cdf(successes - 1, n, p)))
    high = 1.0 if successes == n else solve(lambda p: binomial_cdf(successes, n, p) - alpha)
    return low, high


def newcombe_paired(a: np.ndarray, b: np.ndarray, confidence: float) -> tuple[float, float]:
    """Newcombe's (1998, method 10) interval for the difference of two paired proportions (0/1 arrays)."""
    n = len(a)
    both, only_a, only_b = int(np.sum(a & b)), int(np.sum(a & ~b)), int(np.sum(~a & b))
    neither = n - both - only_a - only_b
    p1, p2 = (both + only_a) / n, (both + only_b) / n
    l1, u1 = wilson(both + only_a, n, confidence)
    l2, u2 = wilson(both + only_b, n, confidence)
    margins = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    cross = both * neither - only_a * only_b
    phi = (max(cross - n / 2, 0) if cross > 0 else cross) / math.sqrt(margins) if margins else 0.0
    below = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    above = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return p1 - p2 - below, p1 - p2 + above


def mcnemar_p_value(a: np.ndarray, b: np.ndarray) -> float:
    """The exact McNemar test: of the pairs where the two differ, is either side more often right?"""
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    if only_a + only_b == 0:
        return 1.0
    return min(1.0, 2 * binomial_cdf(min(only_a, only_b), only_a + only_b, 0.5))


def t_quantile(q: float, dof: int) -> float:
    """Student's t quantile (Hill's 1970 series; exact enough for intervals at any dof >= 1)."""
    if dof == 1:
        return math.tan(math.pi * (q - 0.5))
    if dof == 2:
        return (2 * q - 1) / math.sqrt(2 * q * (1 - q))
    z = _NORMAL.inv_cdf(q)
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / dof + g2 / dof**2 + g3 / dof**3 + g4 / dof**4


def _z(q: float, n: int) -> float:
    """The quantile BCa uses: normal, or the expanded t for small n."""
    if n >= SMALL_N:
        return _NORMAL.inv_cdf(q)
    return math.sqrt(n / (n - 1)) * t_quantile(q, n - 1)


def _bias_and_acceleration(values: np.ndarray, replicates: np.ndarray, estimate: float) -> tuple[float, float]:
    below = np.count_nonzero(replicates < estimate) + 0.5 * np.count_nonzero(replicates == estimate)
    share = min(max(below / len(replicates), 0.5 / len(replicates)), 1 - 0.5 / len(replicates))
    z0 = _NORMAL.inv_cdf(share)
    deviations = values - values.mean()  # the jackknife influence of each value on a mean
    spread = float(np.sum(deviations**2))
    acceleration = float(np.sum(deviations**3)) / (6 * spread**1.5) if spread > 0 else 0.0
    return z0, acceleration


def bca(values: np.ndarray, replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    """BCa interval of the mean of `values` from bootstrap replicates of that mean."""
    estimate = float(values.mean())
    z0, a = _bias_and_acceleration(values, replicates, estimate)
    alpha = (1 - confidence) / 2
    levels = []
    for q in (alpha, 1 - alpha):
        u = z0 + _z(q, len(values))
        levels.append(_NORMAL.cdf(z0 + u / (1 - a * u)) if a * u < 1 else (1.0 if q > 0.5 else 0.0))
    low, high = np.quantile(replicates, levels)
    return float(low), float(high)


def bootstrap_p_value(values: np.ndarray, replicates: np.ndarray) -> float:
    """Two-sided p-value of "the mean is 0": the level at which the BCa interval just reaches 0."""
    estimate = float(values.mean())
    if np.all(values == values[0]):
        return 1.0 if values[0] == 0 else 0.0
    z0, a = _bias_and_acceleration(values, replicates, estimate)
    below = np.count_nonzero(replicates < 0) + 0.5 * np.count_nonzero(replicates == 0)
    share = min(max(below / len(replicates), 0.5 / len(replicates)), 1 - 0.5 / len(replicates))
    w = _NORMAL.inv_cdf(share) - z0
    u = w / (1 + a * w) if 1 + a * w > 0 else -math.inf
    one_sided = _tail(u - z0, len(values))
    return min(1.0, 2 * min(one_sided, 1 - one_sided))


def _tail(z: float, n: int) -> float:
    """P(Z <= z) under the quantile `_z` uses (normal, or the expanded t for small n)."""
    if math.isinf(z):
        return 0.0 if z < 0 else 1.0
    if n >= SMALL_N:
        return _NORMAL.cdf(z)
    lo, hi = 1e-12, 1 - 1e-12  # invert _z by bisection: it is monotone in q
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _z(mid, n) < z else (lo, mid)
    return (lo + hi) / 2


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted
