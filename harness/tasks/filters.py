"""Answer extraction as data: the suite's `filters` (harness.config.suite.AnswerFilter) turn a model's
output into the answer the metrics score, as lm-evaluation-harness's `filter_list` does. The same
steps run when `harness eval` writes a record and when `harness rescore` scores it again, so a rescore
with other filters needs no model."""

from __future__ import annotations

import re
from collections.abc import Sequence

from harness.config.suite import AnswerFilter


def apply_filters(filters: Sequence[AnswerFilter], text: str) -> str:
    for step in filters:
        text = _apply(step, text)
    return text


def _apply(step: AnswerFilter, text: str) -> str:
    if step.function == "strip":
        return text.strip()
    if step.function == "lowercase":
        return text.lower()
    if step.function == "first_line":
        return text.split("\n", 1)[0]
    match = re.search(step.pattern, text)
    if match is None:
        return text if step.fallback is None else step.fallback
    return match.group(step.group) or ""
