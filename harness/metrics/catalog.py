"""Every metric a suite may name, what it measures and the options it takes, declared once.

The registry refuses an option a metric does not declare here, and docs/metrics.md's table of
metrics and options is rendered from these declarations (`harness/metrics/reference.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.metrics.rouge import ROUGE_TYPES, TOKENIZERS

ROUGE_SCORERS: tuple[str, ...] = ("rouge-score", "korean_competition")


@dataclass(frozen=True)
class Option:
    name: str
    default: str
    description: str
    # The values accepted, where they are a fixed set; the builder checks them.
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class MetricSpec:
    name: str
    description: str
    options: tuple[Option, ...] = ()

    @property
    def option_names(self) -> tuple[str, ...]:
        return tuple(option.name for option in self.options)


_ROUGE_OPTIONS = (
    Option(
        "tokenizer",
        "auto",
        "how text becomes tokens; auto: mecab when the references are mostly Hangul, else whitespace",
        TOKENIZERS,
    ),
    Option(
        "scorer",
        "rouge-score",
        "which code computes the numbers; `korean_competition`: the NIKL competition's rouge_metric.py "
        "(MeCab-ko by default)",
        ROUGE_SCORERS,
    ),
)
_SENTENCE_SPLIT = Option(
    "sentence_split", "false", "also split summaries at sentence-final `. ? !`, not only at newlines", ("true", "false")
)
_ROUGE_ABOUT = {
    "rouge1": "ROUGE-1 F1 (unigrams), 0-100",
    "rouge2": "ROUGE-2 F1 (bigrams), 0-100",
    "rougeL": "ROUGE-L F1 (longest common subsequence), 0-100",
    "rougeLsum": "ROUGE-Lsum F1 (union LCS over lines), 0-100",
}

METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("exact_match", "KorQuAD 1.0 exact match after its normalisation, 0-100"),
    MetricSpec("f1", "KorQuAD 1.0 F1 over the characters of the normalised answer, 0-100"),
    MetricSpec("squad_exact_match", "SQuAD v1.1 exact match (English, word level), 0-100"),
    MetricSpec("squad_f1", "SQuAD v1.1 F1 over words (English), 0-100"),
    MetricSpec(
        "contains", "100 when a gold answer appears in the output after KorQuAD's exact-match normalisation, else 0"
    ),
    MetricSpec("squad_contains", "`contains` after SQuAD v1.1's normalisation (English)"),
    *(
        MetricSpec(t, _ROUGE_ABOUT[t], _ROUGE_OPTIONS + ((_SENTENCE_SPLIT,) if t == "rougeLsum" else ()))
        for t in ROUGE_TYPES
    ),
    MetricSpec(
        "bleu",
        "sacrebleu's corpus BLEU",
        (
            Option(
                "tokenize",
                "auto",
                "`mecab` (MeCab-ko morphemes, for Korean), `auto` (mecab when the references are mostly "
                "Hangul, else 13a) or any sacrebleu tokenizer",
            ),
        ),
    ),
    MetricSpec(
        "chrf",
        "sacrebleu's corpus chrF (character n-grams; no tokenizer)",
        (Option("word_order", "0", "word n-grams added: 2 gives chrF++", ("0", "1", "2")),),
    ),
)

BY_NAME: dict[str, MetricSpec] = {spec.name: spec for spec in METRICS}
