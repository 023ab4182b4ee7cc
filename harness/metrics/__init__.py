"""Pure metric functions over strings and numbers (no torch, no I/O)."""

from harness.metrics.bleu import BLEU_TOKENIZERS, CorpusScore, corpus_bleu, corpus_chrf
from harness.metrics.errors import MetricError
from harness.metrics.korquad import korquad_exact_match, korquad_f1, normalize_answer
from harness.metrics.registry import Metric, available_metrics, build_metric
from harness.metrics.repetition import RepetitionStats, repetition_stats
from harness.metrics.rouge import (
    ROUGE_TYPES,
    TOKENIZERS,
    KoreanRouge,
    choose_tokenizer,
    resolve_tokenizer,
    rouge_scores,
    tokenize,
    tokenizer_version,
)
from harness.metrics.squad import normalize_answer_en, squad_exact_match, squad_f1
from harness.metrics.stats import Interval, bootstrap_indices, corpus_ci, mean_ci, paired_delta_ci
from harness.metrics.text import hangul_ratio, split_sentences

__all__ = [
    "BLEU_TOKENIZERS",
    "ROUGE_TYPES",
    "TOKENIZERS",
    "CorpusScore",
    "Interval",
    "KoreanRouge",
    "Metric",
    "MetricError",
    "RepetitionStats",
    "available_metrics",
    "bootstrap_indices",
    "build_metric",
    "choose_tokenizer",
    "corpus_bleu",
    "corpus_chrf",
    "corpus_ci",
    "hangul_ratio",
    "korquad_exact_match",
    "korquad_f1",
    "mean_ci",
    "normalize_answer",
    "normalize_answer_en",
    "paired_delta_ci",
    "repetition_stats",
    "resolve_tokenizer",
    "rouge_scores",
    "split_sentences",
    "squad_exact_match",
    "squad_f1",
    "tokenize",
    "tokenizer_version",
]
