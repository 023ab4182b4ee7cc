"""Name -> Metric, so adding a metric means adding one builder here (and its declaration in catalog.py).

A Metric carries a ``label`` that states how it was computed (``rouge1[mecab]``,
``bleu[13a]``), so numbers computed differently never share a column.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.metrics.bleu import corpus_bleu, corpus_chrf, resolve_bleu_tokenize
from harness.metrics.catalog import BY_NAME, ROUGE_SCORERS
from harness.metrics.contains import korquad_contains, squad_contains
from harness.metrics.errors import MetricError, check_aligned
from harness.metrics.korquad import korquad_exact_match, korquad_f1
from harness.metrics.rouge import ROUGE_TYPES, TOKENIZERS, KoreanRouge, get_kiwi, tokenize, tokenizer_version
from harness.metrics.rouge_competition import LENGTH_LIMIT, CompetitionRouge
from harness.metrics.squad import squad_exact_match, squad_f1
from harness.metrics.user import checked, is_user_metric, load_user_function

PerSample = Callable[[str, list[str]], float]
Corpus = Callable[[list[str], list[list[str]]], float]


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    per_sample: PerSample | None
    corpus: Corpus | None
    higher_is_better: bool = True
    # Package/tokenizer versions behind the number, for the results file.
    version: str = ""


References = Sequence[Sequence[str]] | None


def _check_options(name: str, options: Mapping[str, Any]) -> None:
    allowed = BY_NAME[name].option_names
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        hint = f"allowed: {', '.join(allowed)}" if allowed else "it takes no options"
        raise MetricError(f"metric {name!r}: unknown option(s) {', '.join(unknown)}; {hint}")


def _mean_of(per_sample: PerSample) -> Corpus:
    def corpus(predictions: list[str], references: list[list[str]]) -> float:
        check_aligned(predictions, references)
        return sum(per_sample(p, r) for p, r in zip(predictions, references)) / len(predictions)

    return corpus


def _qa(name: str, fn: PerSample) -> Callable[[Mapping[str, Any], References], Metric]:
    def build(options: Mapping[str, Any], _refs: References) -> Metric:
        _check_options(name, options)
        return Metric(name, name, fn, _mean_of(fn))

    return build


def _rouge(rouge_type: str) -> Callable[[Mapping[str, Any], References], Metric]:
    def build(options: Mapping[str, Any], refs: References) -> Metric:
        _check_options(rouge_type, options)
        which = options.get("scorer", "rouge-score")
        if which not in ROUGE_SCORERS:
            raise MetricError(
                f"metric {rouge_type!r}: unknown scorer {which!r}; choose one of {', '.join(ROUGE_SCORERS)}"
            )
        if which == "korean_competition":
            return _competition(rouge_type, options.get("tokenizer", "auto"))
        scorer = KoreanRouge(
            tokenizer=options.get("tokenizer", "auto"),
            rouge_types=(rouge_type,),
            references_sample=refs,
            sentence_split=options.get("sentence_split", False),
        )

        def per_sample(prediction: str, references: list[str]) -> float:
            return scorer.score(prediction, references)[rouge_type]

        def corpus(predictions: list[str], references: list[list[str]]) -> float:
            return scorer.corpus(predictions, references)[rouge_type]

        return Metric(rouge_type, scorer.label(rouge_type), per_sample, corpus, version=scorer.version)

    return build


def _competition(rouge_type: str, tokenizer: str) -> Metric:
    """The NIKL competition scorer; it is defined on MeCab-ko, so 'auto' means mecab."""
    tokenizer = "mecab" if tokenizer == "auto" else tokenizer
    if tokenizer not in TOKENIZERS or tokenizer in ("rouge-score", "auto"):
        allowed = [t for t in TOKENIZERS if t not in ("rouge-score", "auto")]
        raise MetricError(
            f"metric {rouge_type!r}: scorer 'korean_competition' takes tokenizer {', '.join(allowed)} "
            f"(default mecab), not {tokenizer!r}"
        )
    if tokenizer == "kiwi":
        get_kiwi()
    scorer = CompetitionRouge(
        tokenize=None if tokenizer == "mecab" else (lambda text, t=tokenizer: tokenize(text, t)),
        rouge_types=(rouge_type,),
    )

    def per_sample(prediction: str, references: list[str]) -> float:
        return scorer.score(prediction, references)[rouge_type]

    def corpus(predictions: list[str], references: list[list[str]]) -> float:
        return scorer.corpus(predictions, references)[rouge_type]

    version = (
        f"korean_competition (NIKL rouge_metric.py, {LENGTH_LIMIT}-word limit, NFC); {tokenizer_version(tokenizer)}"
    )
    version = version.replace("; rouge-score " + _rouge_score_version(), "").replace("NFC); NFC; ", "NFC); ")
    return Metric(rouge_type, f"{rouge_type}[{tokenizer},korean_competition]", per_sample, corpus, version=version)


def _rouge_score_version() -> str:
    return tokenizer_version("rouge-score").removeprefix("rouge-score ")


def _bleu(options: Mapping[str, Any], refs: References) -> Metric:
    _check_options("bleu", options)
    tokenize = resolve_bleu_tokenize(options.get("tokenize", "auto"), refs)

    def corpus(predictions: list[str], references: list[list[str]]) -> float:
        return corpus_bleu(predictions, references, tokenize=tokenize).score

    return Metric("bleu", f"bleu[{tokenize}]", None, corpus, version=_sacrebleu_version())


def _chrf(options: Mapping[str, Any], _refs: References) -> Metric:
    # chrF scores character n-grams and ignores whitespace: there is nothing
    # to tokenize, so 'tokenize' is rejected rather than silently ignored.
    _check_options("chrf", options)
    word_order = options.get("word_order", 0)
    if word_order not in (0, 1, 2) or isinstance(word_order, bool):
        raise MetricError(f"metric 'chrf': word_order must be 0, 1 or 2, got {word_order!r}")

    def corpus(predictions: list[str], references: list[list[str]]) -> float:
        return corpus_chrf(predictions, references, word_order=word_order).score

    return Metric("chrf", "chrf" + "+" * word_order, None, corpus, version=_sacrebleu_version())


def _sacrebleu_version() -> str:
    import sacrebleu

    return f"sacrebleu {sacrebleu.__version__}"


_BUILDERS: dict[str, Callable[[Mapping[str, Any], References], Metric]] = {
    "exact_match": _qa("exact_match", korquad_exact_match),
    "f1": _qa("f1", korquad_f1),
    "squad_exact_match": _qa("squad_exact_match", squad_exact_match),
    "squad_f1": _qa("squad_f1", squad_f1),
    "contains": _qa("contains", korquad_contains),
    "squad_contains": _qa("squad_contains", squad_contains),
    **{rouge_type: _rouge(rouge_type) for rouge_type in ROUGE_TYPES},
    "bleu": _bleu,
    "chrf": _chrf,
}


def available_metrics() -> list[str]:
    """Every name ``build_metric`` accepts."""
    return list(_BUILDERS)


def build_metric(name: str, options: Mapping[str, Any] | None = None, references_sample: References = None) -> Metric:
    """Build a configured Metric; ``references_sample`` lets tokenizer='auto' decide once."""
    if options is not None and not isinstance(options, Mapping):
        raise MetricError(f"metric {name!r}: options must be a mapping, got {type(options).__name__}")
    if isinstance(name, str) and is_user_metric(name):
        return _user(name, dict(options or {}))
    builder = _BUILDERS.get(name)
    if builder is None:
        close = difflib.get_close_matches(str(name), list(_BUILDERS), n=1, cutoff=0.0)
        raise MetricError(
            f"unknown metric {name!r}; did you mean {close[0]!r}? (known metrics: {', '.join(_BUILDERS)}; "
            "or your own as FILE.py:FUNCTION)"
        )
    return builder(dict(options or {}), references_sample)


def _user(spec: str, options: Mapping[str, Any]) -> Metric:
    """A metric from the user's file or module (harness.metrics.user), averaged over the samples."""
    unknown = sorted(set(options) - {"higher_is_better"})
    if unknown:
        raise MetricError(f"metric {spec!r}: unknown option(s) {', '.join(unknown)}; allowed: higher_is_better")
    higher = options.get("higher_is_better", True)
    if not isinstance(higher, bool):
        raise MetricError(f"metric {spec!r}: higher_is_better must be true or false, got {higher!r}")
    fn, version = load_user_function(spec)
    per_sample = checked(spec, fn)
    return Metric(spec, spec, per_sample, _mean_of(per_sample), higher_is_better=higher, version=version)


def auto_notes(metrics: Sequence[Any]) -> list[str]:
    """One line per distinct `auto` choice among metrics (or scorers) by their version, e.g.
    'rouge tokenizer auto → mecab (references 97% Hangul)': eval and rescore print them."""
    notes: list[str] = []
    for metric in metrics:
        version = getattr(metric, "version", "") or ""
        if version.startswith("auto → "):
            note = "rouge tokenizer " + version.split(";", 1)[0]
            if note not in notes:
                notes.append(note)
    return notes
