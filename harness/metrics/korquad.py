"""KorQuAD 1.0 exact match and character-level F1.

Semantics follow the official KorQuAD 1.0 ``evaluate-v1.0.py`` (itself a
fork of the SQuAD v1.1 script), so numbers are comparable with published
KorQuAD results:

1. Twelve "unnecessary symbols" are replaced by a space, *before* anything
   else: ' " 《 》 < > 〈 〉 ( ) ‘ ’.  Being a space (not deletion) matters:
   ``a'b`` becomes two tokens.  Curly double quotes “ ” and 「」『』【】 are
   NOT in the official list and are kept, as is every other non-ASCII mark.
2. Lower-casing (str.lower).
3. Every ASCII ``string.punctuation`` character is deleted (no space), so
   ``3.14`` becomes ``314``.
4. Whitespace runs collapse to one space and the ends are stripped.

F1 counts characters of the whitespace-split normalized tokens, i.e. spaces
never count.  Quirks kept on purpose because the official script has them:
two answers that both normalize to "" get EM 100 but F1 0; no overlap gives
F1 0.  Multiple gold answers take the max, per metric independently.
"""

from __future__ import annotations

import string
from collections.abc import Sequence

from harness.metrics.errors import MetricError
from harness.metrics.text import overlap_f1

# The official script substitutes these one by one with re.sub; a translate
# table does the same in one pass.
_SPACED_SYMBOLS = "'\"《》<>〈〉()‘’"
_TO_SPACE = str.maketrans(dict.fromkeys(_SPACED_SYMBOLS, " "))
_DELETE_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """Normalize an answer string exactly as KorQuAD 1.0's official script."""
    text = text.translate(_TO_SPACE)
    text = text.lower()
    text = text.translate(_DELETE_PUNCT)
    return " ".join(text.split())


def _chars(text: str) -> list[str]:
    # Joining the split tokens drops the spaces; that is what makes KorQuAD's
    # F1 character-level over content characters only.
    return list("".join(normalize_answer(text).split()))


def _em_single(prediction: str, gold: str) -> float:
    return 100.0 if normalize_answer(prediction) == normalize_answer(gold) else 0.0


def _f1_single(prediction: str, gold: str) -> float:
    return overlap_f1(_chars(prediction), _chars(gold))


def korquad_exact_match(prediction: str, answers: Sequence[str]) -> float:
    """100.0 if the normalized prediction equals any normalized gold answer, else 0.0."""
    check_qa_inputs(prediction, answers, "exact_match")
    return max(_em_single(prediction, gold) for gold in answers)


def korquad_f1(prediction: str, answers: Sequence[str]) -> float:
    """Character-level F1 (0-100), max over gold answers."""
    check_qa_inputs(prediction, answers, "f1")
    return max(_f1_single(prediction, gold) for gold in answers)


def check_qa_inputs(prediction: object, answers: object, metric: str) -> None:
    """Validate one extractive-QA sample (shared by KorQuAD and SQuAD scoring)."""
    if not isinstance(prediction, str):
        raise MetricError(
            f"{metric}: prediction must be a str, got {type(prediction).__name__}; convert None to '' before scoring"
        )
    if isinstance(answers, str):
        raise MetricError(f"{metric}: answers must be a list of strings, got a single str; wrap it as [answer]")
    if len(answers) == 0:
        raise MetricError(f"{metric}: sample has no gold answers; drop it or add at least one answer")
    for i, gold in enumerate(answers):
        if not isinstance(gold, str):
            raise MetricError(
                f"{metric}: answers[{i}] must be a str, got {type(gold).__name__}; "
                "pass the answer text, not the answer dict"
            )
