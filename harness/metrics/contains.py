"""`contains`: a reference appears in the output, after the same normalisation as exact match.

This is the tutorials' own test ("the answer string appears in the generation"), made comparable
with exact match: both sides go through KorQuAD's normaliser (SQuAD's for `squad_contains`) first,
so quotes, brackets, punctuation, case and whitespace runs never decide the score. A reference
that normalises to nothing would be "contained" in every output; it counts only for an output that
also normalises to nothing, as exact match counts it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from harness.metrics.korquad import check_qa_inputs, normalize_answer
from harness.metrics.squad import normalize_answer_en


def _contains(normalize: Callable[[str], str], prediction: str, gold: str) -> bool:
    gold, prediction = normalize(gold), normalize(prediction)
    return gold in prediction if gold else not prediction


def korquad_contains(prediction: str, answers: Sequence[str]) -> float:
    """100.0 if a normalised gold answer is a substring of the normalised prediction, else 0.0."""
    check_qa_inputs(prediction, answers, "contains")
    return 100.0 if any(_contains(normalize_answer, prediction, gold) for gold in answers) else 0.0


def squad_contains(prediction: str, answers: Sequence[str]) -> float:
    """`korquad_contains` with SQuAD v1.1's (English) normalisation."""
    check_qa_inputs(prediction, answers, "squad_contains")
    return 100.0 if any(_contains(normalize_answer_en, prediction, gold) for gold in answers) else 0.0
