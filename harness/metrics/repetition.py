"""Degeneration statistics for one generated text.

Units: whitespace tokens.  Korean is written with spaces (eojeol), so words
work for Korean and English alike.  When a text has fewer than two whitespace
tokens but more than one character (e.g. "ㅋㅋㅋㅋㅋㅋ", or unspaced CJK) word
statistics are meaningless, so characters are used instead; ``unit`` says
which.  Text is compared as written: no lower-casing, punctuation kept,
because a model repeating "Yes." vs "yes" is still repeating.

distinct-n = unique n-grams / total n-grams; 0.0 when the text has no n-grams
(empty, or distinct-2 of a single token) - check ``n_tokens`` before reading
it as "fully repetitive".

The longest repeated n-gram is the longest token sequence occurring at least
twice, overlaps allowed ("a a a" holds "a a" twice).  Among equally long ones
the most frequent wins, then the earliest.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass

from harness.metrics.errors import MetricError


@dataclass(frozen=True)
class RepetitionStats:
    unit: str  # "word" or "char"
    n_tokens: int
    distinct_1: float
    distinct_2: float
    longest_repeat_len: int  # 0 when nothing repeats
    longest_repeat_count: int  # occurrences of that n-gram; 0 when nothing repeats
    longest_repeat: str  # the n-gram, joined with the unit's separator

    def to_dict(self) -> dict:
        return asdict(self)


def _ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def _distinct(tokens: list[str], n: int) -> float:
    grams = _ngrams(tokens, n)
    return len(set(grams)) / len(grams) if grams else 0.0


def _repeated(tokens: list[str], n: int) -> tuple[tuple[str, ...], int] | None:
    counts = Counter(_ngrams(tokens, n))
    best = None
    for gram, count in counts.items():  # insertion order = first occurrence
        if count >= 2 and (best is None or count > best[1]):
            best = (gram, count)
    return best


def _longest_repeat(tokens: list[str]) -> tuple[tuple[str, ...], int]:
    # "Some n-gram repeats" is monotone in n (a repeated n-gram's prefix also
    # repeats), so binary search keeps long degenerate outputs cheap.
    lo, hi, found = 1, len(tokens) - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        hit = _repeated(tokens, mid)
        if hit:
            found, lo = hit, mid + 1
        else:
            hi = mid - 1
    return found if found else ((), 0)


def repetition_stats(text: str) -> RepetitionStats:
    """Distinct-1/2 and the longest repeated n-gram of ``text``."""
    if not isinstance(text, str):
        raise MetricError(f"repetition: text must be a str, got {type(text).__name__}; convert None to ''")
    words = text.split()
    if len(words) >= 2:
        unit, tokens, sep = "word", words, " "
    else:
        unit, tokens, sep = "char", [c for c in text if not c.isspace()], ""
        if len(tokens) <= 1:
            unit = "word"  # one word or nothing: both views agree, report words
            tokens = words
    gram, count = _longest_repeat(tokens)
    return RepetitionStats(
        unit=unit,
        n_tokens=len(tokens),
        distinct_1=_distinct(tokens, 1),
        distinct_2=_distinct(tokens, 2),
        longest_repeat_len=len(gram),
        longest_repeat_count=count,
        longest_repeat=sep.join(gram),
    )
