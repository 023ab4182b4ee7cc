"""ROUGE-1/2/L/Lsum through the ``rouge-score`` package, with tokenizers that keep Korean.

rouge-score's default tokenizer deletes every non-ASCII character, so Korean
text would silently score 0.0 (or 100 when only digits and Latin letters
survive).  Two rules keep that from happening:

* a reference must yield at least one token, or MetricError names the sample
  (it is a data error); a prediction may yield none and then scores 0, as an
  empty prediction does: a degenerate output ("!!!") is a result, not an error;
* a text holding Hangul under a tokenizer that drops Hangul (``rouge-score``)
  is an error naming the sample, whatever its share of Hangul.

Tokenizers (``TOKENIZERS``):
  mecab        MeCab-ko morphemes (python-mecab-ko) of the normalized text
  whitespace   whitespace tokens of the normalized text
  kiwi         Kiwi morphemes (kiwipiepy, the optional extra ``harness[kiwi]``)
  char         non-space characters of the normalized text
  rouge-score  rouge-score's own DefaultTokenizer (no stemming), for English;
               numbers are identical to RougeScorer's own (no NFC either)
  auto         mecab when the references are mostly Hangul, else whitespace,
               which on text without Hangul gives exactly rouge-score's
               tokens but keeps any Hangul a prediction holds; the choice is
               recorded in ``version`` ("auto → mecab (references 97% Hangul)")
"Normalized" = NFC, lower-cased, everything outside [A-Za-z0-9가-힣] made a
space, as Korean summarization benchmarks do.  NFC comes first because an
NFD-encoded syllable is a run of conjoining jamo that the character class
would delete.

Scores are F-measure x 100 per sample; with several references each ROUGE type
takes its max over references independently.  ROUGE-Lsum sees the text's
lines, as rouge-score does; ``sentence_split=True`` (label
``rougeLsum[mecab,sentences]``) first splits lines at sentence-final
. ? ! with ``split_sentences``, which needs no NLTK data.
"""

from __future__ import annotations

import functools
import importlib.metadata
import unicodedata
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rouge_score import rouge_scorer, tokenizers

from harness.metrics.errors import MetricError, check_aligned
from harness.metrics.text import get_mecab, hangul_ratio, normalize_korean, split_sentences

ROUGE_TYPES: tuple[str, ...] = ("rouge1", "rouge2", "rougeL", "rougeLsum")
TOKENIZERS: tuple[str, ...] = ("mecab", "whitespace", "kiwi", "char", "rouge-score", "auto")
# Above this Hangul share of letters in the references, `auto` picks mecab.
AUTO_HANGUL_THRESHOLD = 0.5
_CACHE_SIZE = 8192
# The tokenizers that keep Hangul; the rest (rouge-score) drop it.
_KEEPS_HANGUL = ("mecab", "whitespace", "kiwi", "char")


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def _dist_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _mecab_tokens(text: str) -> tuple[str, ...]:
    normalized = normalize_korean(_nfc(text))
    if not normalized.strip():
        return ()
    return tuple(get_mecab().morphs(normalized))


@functools.lru_cache(maxsize=1)
def get_kiwi():
    """One shared Kiwi analyser (kiwipiepy is an optional extra: much slower than MeCab and large)."""
    try:
        from kiwipiepy import Kiwi
    except ImportError as exc:
        raise MetricError(
            f"tokenizer 'kiwi': kiwipiepy is not installed ({exc}); "
            "pip install 'harness[kiwi]' or use tokenizer='mecab'"
        ) from exc
    return Kiwi()


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _kiwi_tokens(text: str) -> tuple[str, ...]:
    normalized = normalize_korean(_nfc(text))
    if not normalized.strip():
        return ()
    return tuple(token.form for token in get_kiwi().tokenize(normalized))


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _whitespace_tokens(text: str) -> tuple[str, ...]:
    return tuple(normalize_korean(_nfc(text)).split())


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _char_tokens(text: str) -> tuple[str, ...]:
    return tuple("".join(normalize_korean(_nfc(text)).split()))


_ROUGE_SCORE_DEFAULT = tokenizers.DefaultTokenizer(use_stemmer=False)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _rouge_score_tokens(text: str) -> tuple[str, ...]:
    return tuple(_ROUGE_SCORE_DEFAULT.tokenize(text))


_TOKEN_FUNCS: dict[str, Callable[[str], tuple[str, ...]]] = {
    "mecab": _mecab_tokens,
    "whitespace": _whitespace_tokens,
    "kiwi": _kiwi_tokens,
    "char": _char_tokens,
    "rouge-score": _rouge_score_tokens,
}


class _Tokenizer(tokenizers.Tokenizer):
    """Adapter giving RougeScorer the ``tokenize()`` method it expects."""

    def __init__(self, name: str):
        self._func = _TOKEN_FUNCS[name]

    def tokenize(self, text: str) -> list[str]:
        return list(self._func(text))


def _check_name(name: str) -> None:
    if name not in TOKENIZERS:
        raise MetricError(f"rouge: unknown tokenizer {name!r}; choose one of {', '.join(TOKENIZERS)}")


def _flatten(references: Sequence[str] | Sequence[Sequence[str]]) -> list[str]:
    flat: list[str] = []
    for ref in references:
        flat.extend([ref] if isinstance(ref, str) else list(ref))
    return flat


def choose_tokenizer(references: Sequence[str] | Sequence[Sequence[str]]) -> str:
    """What ``auto`` resolves to: 'mecab' if the references are mostly Hangul, else 'whitespace'.

    Not 'rouge-score': a Korean answer to an English reference would lose its Hangul (and score
    as if it were not there); 'whitespace' tokenizes Hangul-free text exactly as rouge-score does.
    """
    ratio = hangul_ratio([_nfc(t) for t in _flatten(references)])
    return "mecab" if ratio > AUTO_HANGUL_THRESHOLD else "whitespace"


def auto_note(references: Sequence[str] | Sequence[Sequence[str]]) -> str:
    """Why ``auto`` chose what it chose, e.g. 'auto → mecab (references 97% Hangul)'."""
    ratio = hangul_ratio([_nfc(t) for t in _flatten(references)])
    return f"auto → {choose_tokenizer(references)} (references {ratio:.0%} Hangul)"


def resolve_tokenizer(name: str, references_sample: Sequence[str] | Sequence[Sequence[str]] | None = None) -> str:
    """Turn a tokenizer option into a concrete tokenizer name ('auto' needs references)."""
    _check_name(name)
    if name != "auto":
        return name
    if not references_sample:
        raise MetricError(
            "rouge: tokenizer='auto' needs references to decide; pass references_sample "
            "or name the tokenizer ('mecab' for Korean, 'rouge-score' for English)"
        )
    return choose_tokenizer(references_sample)


def tokenizer_version(name: str) -> str:
    """Package versions behind a concrete tokenizer, for labelling results."""
    _check_name(name)
    if name == "auto":
        raise MetricError("rouge: resolve tokenizer 'auto' before asking its version")
    rouge_v = f"rouge-score {_dist_version('rouge-score')}"
    if name == "mecab":
        return (
            f"NFC; python-mecab-ko {_dist_version('python-mecab-ko')}; "
            f"python-mecab-ko-dic {_dist_version('python-mecab-ko-dic')}; {rouge_v}"
        )
    if name == "kiwi":
        return (
            f"NFC; kiwipiepy {_dist_version('kiwipiepy')}; kiwipiepy_model {_dist_version('kiwipiepy_model')}; "
            f"{rouge_v}"
        )
    if name in ("whitespace", "char"):
        return f"harness ko-normalize NFC [A-Za-z0-9가-힣]; {rouge_v}"
    return rouge_v


def tokenize(text: str, tokenizer: str) -> list[str]:
    """The tokens ROUGE sees for ``text`` under a concrete tokenizer."""
    _check_name(tokenizer)
    if tokenizer == "auto":
        raise MetricError("rouge: tokenize() needs a concrete tokenizer, not 'auto'")
    return list(_TOKEN_FUNCS[tokenizer](text))


@dataclass
class KoreanRouge:
    """A configured ROUGE scorer; resolves ``auto`` once so every sample uses one tokenizer."""

    tokenizer: str = "auto"
    rouge_types: Sequence[str] = ROUGE_TYPES
    references_sample: Sequence[str] | Sequence[Sequence[str]] | None = None
    # ROUGE-Lsum only: split lines at sentence-final . ? ! too (rouge-score splits at newlines only).
    sentence_split: bool = False
    version: str = field(init=False)
    _scorer: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        requested = self.tokenizer
        self.tokenizer = resolve_tokenizer(self.tokenizer, self.references_sample)
        bad = [t for t in self.rouge_types if t not in ROUGE_TYPES]
        if bad or not self.rouge_types:
            raise MetricError(f"rouge: unknown rouge type(s) {bad}; choose from {', '.join(ROUGE_TYPES)}")
        if not isinstance(self.sentence_split, bool):
            raise MetricError(f"rouge: sentence_split must be true or false, got {self.sentence_split!r}")
        self.rouge_types = tuple(self.rouge_types)
        self.version = tokenizer_version(self.tokenizer)
        if requested == "auto":
            self.version = f"{auto_note(self.references_sample)}; {self.version}"
        if self.tokenizer == "kiwi":
            get_kiwi()  # fail at configuration time, not on the first sample
        self._scorer = rouge_scorer.RougeScorer(list(self.rouge_types), tokenizer=_Tokenizer(self.tokenizer))

    def label(self, rouge_type: str) -> str:
        """E.g. 'rouge1[mecab]', 'rougeLsum[mecab,sentences]'."""
        if rouge_type == "rougeLsum" and self.sentence_split:
            return f"{rouge_type}[{self.tokenizer},sentences]"
        return f"{rouge_type}[{self.tokenizer}]"

    def _prepare(self, text: Any, sample: Hashable, field_name: str) -> str:
        if not isinstance(text, str):
            raise MetricError(
                f"rouge: sample {sample} {field_name} must be a str, got {type(text).__name__}; convert None to ''"
            )
        if self.tokenizer not in _KEEPS_HANGUL and hangul_ratio([_nfc(text)]) > 0:
            # Its tokenizer deletes Hangul but keeps digits and Latin letters, so "삼성 Galaxy S24"
            # and "애플 Galaxy S24" would score 100.
            kept = " ".join(_TOKEN_FUNCS[self.tokenizer](text))[:40]
            raise MetricError(
                f"rouge: sample {sample} {field_name} {text[:40]!r} holds Hangul but tokenizer "
                f"'{self.tokenizer}' keeps only {kept!r} of it; use tokenizer='mecab' (or 'auto')"
            )
        if field_name != "prediction" and not _TOKEN_FUNCS[self.tokenizer](text):
            kept = "ASCII letters or digits" if self.tokenizer == "rouge-score" else "letters or digits"
            raise MetricError(
                f"rouge: sample {sample} {field_name} {text[:40]!r} yields no tokens under tokenizer "
                f"'{self.tokenizer}' (it has no {kept}); fix the reference or drop the sample"
            )
        # Only Lsum reads the newlines; the other types see the same tokens
        # either way because every tokenizer treats newlines as whitespace.
        if self.sentence_split and "rougeLsum" in self.rouge_types:
            return "\n".join(split_sentences(text))
        return text

    def score(self, prediction: str, references: Sequence[str], sample: Hashable = "?") -> dict[str, float]:
        """F-measure x 100 per ROUGE type, max over references; a prediction without tokens scores 0."""
        if isinstance(references, str):
            references = [references]
        if len(references) == 0:
            raise MetricError(f"rouge: sample {sample} has no references; add one or drop it")
        pred = self._prepare(prediction, sample, "prediction")
        best = dict.fromkeys(self.rouge_types, 0.0)
        for i, ref in enumerate(references):
            target = self._prepare(ref, sample, f"references[{i}]")
            scores = self._scorer.score(target, pred)
            for rouge_type in self.rouge_types:
                best[rouge_type] = max(best[rouge_type], 100.0 * scores[rouge_type].fmeasure)
        return best

    def corpus(self, predictions: Sequence[str], references: Sequence[Sequence[str] | str]) -> dict[str, float]:
        """Mean of the per-sample scores."""
        return mean_of_samples(self.score, self.rouge_types, predictions, references)


def mean_of_samples(score, rouge_types, predictions, references) -> dict[str, float]:
    """Per-sample ROUGE averaged over samples (rouge-score's and the competition's corpus figure)."""
    check_aligned(predictions, references, "rouge")
    totals = dict.fromkeys(rouge_types, 0.0)
    for i, (pred, refs) in enumerate(zip(predictions, references)):
        for rouge_type, value in score(pred, refs, sample=i).items():
            totals[rouge_type] += value
    return {k: v / len(predictions) for k, v in totals.items()}


def rouge_scores(
    prediction: str,
    references: Sequence[str],
    *,
    tokenizer: str = "auto",
    rouge_types: Sequence[str] = ROUGE_TYPES,
    sample: Hashable = "?",
) -> dict[str, float]:
    """One sample's ROUGE F-measures x 100.  ``auto`` decides from this sample's references."""
    refs = [references] if isinstance(references, str) else references
    scorer = KoreanRouge(tokenizer=tokenizer, rouge_types=rouge_types, references_sample=refs)
    return scorer.score(prediction, refs, sample=sample)
