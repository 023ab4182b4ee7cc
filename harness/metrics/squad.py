"""SQuAD v1.1 exact match and word-level F1 (the official v1.1 script's semantics).

Normalization order as in the official script: lower-case, delete ASCII
punctuation, replace the whole words a/an/the by a space, collapse whitespace.
F1 is over whitespace tokens.  As in v1.1 (unlike v2.0), two answers that both
normalize to "" get EM 100 and F1 0.  Max over gold answers.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

from harness.metrics.korquad import check_qa_inputs
from harness.metrics.text import overlap_f1

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_DELETE_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_answer_en(text: str) -> str:
    """Normalize an answer string exactly as SQuAD v1.1's official script."""
    text = text.lower()
    text = text.translate(_DELETE_PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _f1_single(prediction: str, gold: str) -> float:
    return overlap_f1(normalize_answer_en(prediction).split(), normalize_answer_en(gold).split())


def squad_exact_match(prediction: str, answers: Sequence[str]) -> float:
    """100.0 if the normalized prediction equals any normalized gold answer, else 0.0."""
    check_qa_inputs(prediction, answers, "squad_exact_match")
    best = max(normalize_answer_en(prediction) == normalize_answer_en(g) for g in answers)
    return 100.0 if best else 0.0


def squad_f1(prediction: str, answers: Sequence[str]) -> float:
    """Word-level F1 (0-100), max over gold answers."""
    check_qa_inputs(prediction, answers, "squad_f1")
    return max(_f1_single(prediction, gold) for gold in answers)
