"""Confidence intervals for metric means and paired deltas, deterministic from a seed.

Which interval (``Interval.method``):
  exact      a column whose every value is 0 or ``full_score`` (exact match): Clopper-Pearson;
  newcombe   the paired delta of two such columns: Newcombe's interval, exact McNemar p-value;
  bca        any other mean or paired delta: the BCa bootstrap (see ``intervals``);
  percentile corpus metrics (BLEU, chrF, perplexity), whose jackknife would cost n corpus
             scorings: the percentile bootstrap.
Each interval of a delta carries a two-sided ``p_value`` from the same computation, so a family
of deltas can be corrected together (Holm, in ``harness.metrics.aggregate``).

The bootstrap functions draw their resamples from ``bootstrap_indices``, so with
the same ``seed``, ``n_resamples`` and ``n`` they use the very same resampled
index sets: a paired comparison of two systems stays paired across calls.

Small samples, on purpose not errors:
  n == 0  value/low/high are NaN (``to_dict`` turns them into None for JSON; a metric that is NaN
          over samples stays NaN).
  n == 1  value == low == high (nothing to resample); the interval is not
          evidence of anything, so ``excludes_zero`` is False whenever n < 2.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from harness.metrics.errors import MetricError
from harness.metrics.intervals import bca, bootstrap_p_value, clopper_pearson, mcnemar_p_value, newcombe_paired

# Bound memory when resampling long eval sets: rows of indices are drawn in
# blocks of about this many integers.
_BLOCK_ELEMENTS = 2_000_000


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float
    n: int
    confidence: float = 0.95
    method: str = "percentile"
    p_value: float | None = None  # two-sided, of "the mean is 0"; set on deltas

    @property
    def excludes_zero(self) -> bool:
        """True when the whole interval lies on one side of 0 (and n >= 2)."""
        if self.n < 2 or math.isnan(self.low):
            return False
        return self.low > 0 or self.high < 0

    def to_dict(self) -> dict:
        # No samples: no value (None). A metric computed as nan or inf from samples (a broken model's
        # perplexity) stays so: JSON readers of harness take NaN and Infinity, and reports show them.
        def clean(x: float) -> float | None:
            return None if self.n == 0 and math.isnan(x) else float(x)

        out = {
            "value": clean(self.value),
            "low": clean(self.low),
            "high": clean(self.high),
            "n": self.n,
            "confidence": self.confidence,
            "method": self.method,
            "excludes_zero": self.excludes_zero,
        }
        if self.p_value is not None:
            out["p_value"] = self.p_value
        return out


def _check_params(n_resamples: int, confidence: float) -> None:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise MetricError(f"bootstrap: n_resamples must be a positive int, got {n_resamples!r}")
    if not 0.0 < confidence < 1.0:
        raise MetricError(f"bootstrap: confidence must be in (0, 1), got {confidence!r}")


def bootstrap_indices(n: int, *, seed: int = 0, n_resamples: int = 1000) -> Iterator[np.ndarray]:
    """Yield blocks (rows = resamples) of indices drawn with replacement from range(n)."""
    rng = np.random.default_rng(seed)
    rows_per_block = max(1, _BLOCK_ELEMENTS // max(n, 1))
    done = 0
    while done < n_resamples:
        rows = min(rows_per_block, n_resamples - done)
        yield rng.integers(0, n, size=(rows, n))
        done += rows


def _percentiles(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = (1.0 - confidence) / 2.0
    low, high = np.percentile(samples, [100.0 * alpha, 100.0 * (1.0 - alpha)])
    return float(low), float(high)


def _as_array(values: Sequence[float], name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise MetricError(f"bootstrap: {name} must be a flat list of numbers, got shape {arr.shape}")
    if np.isnan(arr).any():
        bad = int(np.flatnonzero(np.isnan(arr))[0])
        raise MetricError(f"bootstrap: {name}[{bad}] is NaN; drop or score that sample first")
    return arr


def _degenerate(value: float, n: int, confidence: float) -> Interval:
    return Interval(value, value, value, n, confidence)


def _is_binary(arr: np.ndarray, full_score: float | None) -> bool:
    return full_score is not None and bool(np.all((arr == 0) | (arr == full_score)))


def mean_ci(
    values: Sequence[float],
    *,
    seed: int = 0,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    full_score: float | None = None,
) -> Interval:
    """Mean of ``values``: an exact interval when every value is 0 or ``full_score``, else BCa."""
    _check_params(n_resamples, confidence)
    arr = _as_array(values, "values")
    n = len(arr)
    if n == 0:
        return _degenerate(math.nan, 0, confidence)
    value = float(arr.mean())
    if _is_binary(arr, full_score):
        low, high = clopper_pearson(int(np.sum(arr == full_score)), n, confidence)
        return Interval(value, low * full_score, high * full_score, n, confidence, "exact")
    if n == 1:
        return _degenerate(value, 1, confidence)
    means = _bootstrap_means(arr, seed, n_resamples)
    low, high = bca(arr, means, confidence)
    return Interval(value, low, high, n, confidence, "bca", bootstrap_p_value(arr, means))


def _bootstrap_means(arr: np.ndarray, seed: int, n_resamples: int) -> np.ndarray:
    return np.concatenate(
        [arr[idx].mean(axis=1) for idx in bootstrap_indices(len(arr), seed=seed, n_resamples=n_resamples)]
    )


def paired_delta_ci(
    a: Sequence[float],
    b: Sequence[float],
    *,
    seed: int = 0,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    full_score: float | None = None,
) -> Interval:
    """Mean of a[i] - b[i] (e.g. adapter minus base), with its two-sided p-value."""
    _check_params(n_resamples, confidence)
    arr_a, arr_b = _as_array(a, "a"), _as_array(b, "b")
    if len(arr_a) != len(arr_b):
        raise MetricError(
            f"bootstrap: paired lists differ in length ({len(arr_a)} vs {len(arr_b)}); "
            "score both systems on the same samples"
        )
    n = len(arr_a)
    if n >= 1 and _is_binary(arr_a, full_score) and _is_binary(arr_b, full_score):
        right_a, right_b = arr_a == full_score, arr_b == full_score
        low, high = newcombe_paired(right_a, right_b, confidence)
        return Interval(
            float((arr_a - arr_b).mean()),
            low * full_score,
            high * full_score,
            n,
            confidence,
            "newcombe",
            mcnemar_p_value(right_a, right_b),
        )
    # Resampling indices and then differencing equals resampling the
    # per-sample differences, so pairing costs nothing extra.
    interval = mean_ci(arr_a - arr_b, seed=seed, n_resamples=n_resamples, confidence=confidence)
    if n == 1:
        return Interval(interval.value, interval.low, interval.high, 1, confidence, "bca", 1.0)
    return interval


def corpus_ci(
    statistic: Callable[[np.ndarray], float],
    n: int,
    *,
    seed: int = 0,
    n_resamples: int = 1000,
    confidence: float = 0.95,
) -> Interval:
    """Interval for a corpus-level metric (BLEU, chrF, ...).

    ``statistic(indices)`` computes the metric over the samples at ``indices``
    (repeats included); ``value`` is ``statistic(np.arange(n))``.  For a paired
    delta, make ``statistic`` return metric(adapter) - metric(base) on the
    same indices.
    """
    _check_params(n_resamples, confidence)
    if n < 0:
        raise MetricError(f"bootstrap: n must be >= 0, got {n}")
    if n == 0:
        return _degenerate(math.nan, 0, confidence)
    value = float(statistic(np.arange(n)))
    if n == 1:
        return _degenerate(value, 1, confidence)
    stats = np.asarray(
        [float(statistic(row)) for block in bootstrap_indices(n, seed=seed, n_resamples=n_resamples) for row in block]
    )
    return percentile_interval(value, stats, n, confidence)


def percentile_interval(value: float, stats: np.ndarray, n: int, confidence: float) -> Interval:
    """The percentile interval of a statistic from its bootstrap replicates `stats`, with the
    two-sided p-value of "the statistic is 0"."""
    low, high = _percentiles(stats, confidence)
    # The percentile interval excludes 0 at level 1 - p: twice the smaller tail beyond 0.
    below = (np.count_nonzero(stats < 0) + 0.5 * np.count_nonzero(stats == 0) + 0.5) / (len(stats) + 1)
    p_value = 1.0 if np.all(stats == 0) else min(1.0, 2 * min(below, 1 - below))
    return Interval(value, low, high, n, confidence, "percentile", float(p_value))
