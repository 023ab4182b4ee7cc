"""Shared text helpers: Hangul detection, Korean normalisation, sentence splitting."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

from harness.metrics.errors import MetricError

_HANGUL_SYLLABLE = re.compile(r"[가-힣]")
_LETTER = re.compile(r"[^\W\d_]")
# Korean summarization benchmarks keep only Latin letters, digits and complete
# Hangul syllables; everything else (punctuation, jamo, emoji) becomes a space.
_NON_KEPT = re.compile(r"[^A-Za-z0-9가-힣]+")
# A sentence ends at . ? ! (ASCII or full-width, optionally followed by closing
# quotes/brackets) when whitespace follows.  "다." endings are the Korean case
# of this rule; requiring whitespace keeps decimals like 3.14 intact.
_SENTENCE_END = re.compile(r"(?<=[.?!。？！…])([\"'”’)\]」』》〉]*)\s+")


def hangul_ratio(texts: Iterable[str]) -> float:
    """Share of letters that are Hangul syllables (0.0 when there are no letters)."""
    hangul = letters = 0
    for text in texts:
        hangul += len(_HANGUL_SYLLABLE.findall(text))
        letters += len(_LETTER.findall(text))
    return hangul / letters if letters else 0.0


def normalize_korean(text: str) -> str:
    """Lower-case and replace everything outside [A-Za-z0-9가-힣] with a space."""
    return _NON_KEPT.sub(" ", text.lower())


def split_sentences(text: str) -> list[str]:
    """Split on newlines and on sentence-final . ? ! followed by whitespace.

    No abbreviation list: "Dr. Kim" splits into two.  It only affects
    ROUGE-Lsum, where a spurious split costs little and NLTK's punkt would
    need a download and does not know Korean.
    """
    sentences: list[str] = []
    for line in text.splitlines():
        marked = _SENTENCE_END.sub(lambda m: m.group(1) + "\n", line)
        sentences.extend(s.strip() for s in marked.split("\n") if s.strip())
    return sentences


@functools.lru_cache(maxsize=1)
def get_mecab():
    """One shared python-mecab-ko tagger, loaded on first use.

    Loading the dictionary takes a noticeable moment and English-only runs never need it.
    """
    try:
        import mecab
    except ImportError as exc:
        raise MetricError(
            f"tokenizer 'mecab': python-mecab-ko is not importable ({exc}); "
            "pip install python-mecab-ko or use tokenizer='char'"
        ) from exc
    return mecab.MeCab()


def overlap_f1(predicted: list[str], gold: list[str]) -> float:
    """F1 (0-100) of the multiset overlap of two unit lists: characters for KorQuAD, words for SQuAD."""
    from collections import Counter

    overlap = sum((Counter(predicted) & Counter(gold)).values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(predicted)
    recall = overlap / len(gold)
    return 100.0 * (2 * precision * recall) / (precision + recall)
