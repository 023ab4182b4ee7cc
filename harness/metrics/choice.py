"""Multiple-choice scores from per-choice log-likelihoods, as lm-evaluation-harness computes them.

The prediction is the first choice of highest log-likelihood (`acc`), or of highest log-likelihood per
character of the choice's text without the delimiter (`acc_norm`), numpy's argmax and division
included, so that an empty choice or an infinite log-likelihood picks what lm-evaluation-harness picks.
A NaN log-likelihood (a broken model) makes the sample's score NaN, never a silent 0 or 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

FULL = 100.0


def prediction(loglikelihoods: Sequence[float], choices: Sequence[str], normalized: bool = False) -> int | None:
    """The index of the chosen choice; None where a log-likelihood is NaN."""
    lls = np.array([float("nan") if x is None else x for x in loglikelihoods], dtype=np.float64)
    if np.isnan(lls).any() or not len(lls):
        return None
    if normalized:
        with np.errstate(divide="ignore", invalid="ignore"):
            lls = lls / np.array([float(len(c)) for c in choices])
    return int(np.argmax(lls))


def accuracy(loglikelihoods: Sequence[float], choices: Sequence[str], gold: Sequence[int], normalized=False) -> float:
    """100 when the chosen choice is a right one, 0 when not, NaN when a log-likelihood is NaN."""
    chosen = prediction(loglikelihoods, choices, normalized)
    if chosen is None:
        return math.nan
    return FULL if chosen in gold else 0.0


def macro_f1(golds: Sequence[int], predictions: Sequence[int | None]) -> float:
    """F1 averaged over the labels seen among golds and predictions, each label's F1 0 when it has no
    true positive (scikit-learn's `f1_score(average="macro")`, lm-evaluation-harness's KoBEST `f1`)."""
    if any(p is None for p in predictions):
        return math.nan
    if not golds:
        return math.nan
    labels = sorted(set(golds) | set(predictions))
    scores = []
    for label in labels:
        tp = sum(1 for g, p in zip(golds, predictions) if g == label and p == label)
        fp = sum(1 for g, p in zip(golds, predictions) if g != label and p == label)
        fn = sum(1 for g, p in zip(golds, predictions) if g == label and p != label)
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return FULL * sum(scores) / len(scores)
