"""`contains` against a plain reimplementation: the normalised reference is a substring of the
normalised output (KorQuAD's normaliser as its official script writes it, re-typed here)."""

from __future__ import annotations

import re
import string

import pytest

from harness.metrics import MetricError, build_metric


def plain_normalize(s: str) -> str:
    # KorQuAD 1.0 evaluate-v1.0.py's normalize_answer, step by step.
    for symbol in ["'", '"', "《", "》", "<", ">", "〈", "〉", "(", ")", "‘", "’"]:
        s = re.sub(re.escape(symbol), " ", s)
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    return " ".join(s.split())


def plain_contains(output: str, references: list[str]) -> float:
    out = plain_normalize(output)
    hits = [(plain_normalize(r) in out) if plain_normalize(r) else out == "" for r in references]
    return 100.0 if any(hits) else 0.0


CASES = [
    ("답은 서울입니다.", ["서울"]),
    ("답은 서울입니다.", ["부산", "서울"]),
    ("답은 부산", ["서울"]),
    ("", ["서울"]),
    ("", [""]),
    ("뭔가", [""]),
    ("  ", ["   "]),
    ("《세종대왕》이 만들었다", ["세종대왕"]),
    ("세종 대왕", ["세종대왕"]),
    ("세종  \n\t대왕이다", ["세종 대왕"]),
    ("The ANSWER is 3.14!", ["answer is 314"]),
    ("e\u0301clair", ["éclair"]),  # combining accent vs precomposed: not normalised, so not equal
    ("“인용”된 답", ["인용"]),
    ("🙂 이모지 답 🙂", ["이모지 답"]),
    ("'a'b", ["a b"]),
]


@pytest.mark.parametrize(("output", "references"), CASES)
def test_contains_matches_a_plain_reimplementation(output, references):
    metric = build_metric("contains")
    assert metric.per_sample(output, references) == plain_contains(output, references)


def test_contains_is_a_proportion_of_samples():
    metric = build_metric("contains")
    outputs, refs = [o for o, _ in CASES], [r for _, r in CASES]
    expected = sum(plain_contains(o, r) for o, r in CASES) / len(CASES)
    assert metric.corpus(outputs, refs) == pytest.approx(expected)


def test_squad_contains_uses_squad_normalisation():
    metric = build_metric("squad_contains")
    assert metric.per_sample("It was the Eiffel Tower.", ["Eiffel tower"]) == 100.0
    assert metric.per_sample("It was the tower", ["Eiffel tower"]) == 0.0


def test_contains_refuses_a_sample_without_references():
    with pytest.raises(MetricError, match="no gold answers"):
        build_metric("contains").per_sample("답", [])
