"""Percentile-bootstrap 95% confidence intervals, deterministic from a seed.

All three functions draw their resamples from ``bootstrap_indices``, so with
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

        return {
            "value": clean(self.value),
            "low": clean(self.low),
            "high": clean(self.high),
            "n": self.n,
            "confidence": self.confidence,
            "excludes_zero": self.excludes_zero,
        }


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


def mean_ci(
    values: Sequence[float],
    *,
    seed: int = 0,
    n_resamples: int = 1000,
    confidence: float = 0.95,
) -> Interval:
    """Mean of ``values`` with a percentile-bootstrap interval."""
    _check_params(n_resamples, confidence)
    arr = _as_array(values, "values")
    n = len(arr)
    if n == 0:
        return _degenerate(math.nan, 0, confidence)
    value = float(arr.mean())
    if n == 1:
        return _degenerate(value, 1, confidence)
    means = np.concatenate(
        [arr[idx].mean(axis=1) for idx in bootstrap_indices(n, seed=seed, n_resamples=n_resamples)]
    )
    low, high = _percentiles(means, confidence)
    return Interval(value, low, high, n, confidence)


def paired_delta_ci(
    a: Sequence[float],
    b: Sequence[float],
    *,
    seed: int = 0,
    n_resamples: int = 1000,
    confidence: float = 0.95,
) -> Interval:
    """Mean of a[i] - b[i] (e.g. adapter minus base), both resampled with the same indices."""
    arr_a, arr_b = _as_array(a, "a"), _as_array(b, "b")
    if len(arr_a) != len(arr_b):
        raise MetricError(
            f"bootstrap: paired lists differ in length ({len(arr_a)} vs {len(arr_b)}); "
            "score both systems on the same samples"
        )
    # Resampling indices and then differencing equals resampling the
    # per-sample differences, so pairing costs nothing extra.
    return mean_ci(arr_a - arr_b, seed=seed, n_resamples=n_resamples, confidence=confidence)


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
    stats = [
        float(statistic(row))
        for block in bootstrap_indices(n, seed=seed, n_resamples=n_resamples)
        for row in block
    ]
    low, high = _percentiles(np.asarray(stats), confidence)
    return Interval(value, low, high, n, confidence)
