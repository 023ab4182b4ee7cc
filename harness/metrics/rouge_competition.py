"""ROUGE as the NIKL Korean competition scorer computes it (``scorer: korean_competition``).

The National Institute of Korean Language's summarization tasks (and KoBART-summarization,
and the projects that copy its scorer) score with ``rouge_metric.py`` from
teddysum/korean_evaluation, a derivative of py-rouge configured as
``Rouge(metrics=["rouge-n", "rouge-l"], max_n=2, limit_length=True, length_limit=1000,
length_limit_type="words", use_tokenizer=True, apply_avg=True, alpha=0.5)``.  This module
re-implements that configuration (it shares no code with it) so the numbers agree:

Preprocessing, for the prediction and every reference:
  * lines are ``text.split("\\n")``;
  * the 1,000-word limit counts *whitespace words of the raw text* (punctuation-only words
    included), before normalisation; ROUGE-N keeps the first 1,000 words of the lines joined
    by spaces, ROUGE-L keeps whole lines while the running count stays below 1,000 and cuts
    the line that reaches it;
  * each piece is lower-cased, every character outside ``[A-Za-z0-9가-힣]`` becomes a space,
    and the result is split into MeCab-ko morphemes.  Before all of this the text is put in
    Unicode NFC (the scorer itself does not, so it deletes an NFD-encoded syllable's jamo; on
    NFC text, which is nearly all text, the numbers are the same).

A prediction without tokens ("!!!", "") scores 0, as the scorer gives any text with no
overlap; a reference without tokens is a data error naming the sample.

ROUGE-N (n = 1, 2), per sample: with R references, the prediction's n-gram count, the
reference's n-gram count and the clipped overlap are each *summed over the references*
(so the prediction is counted R times), then P = overlap / predicted, R = overlap / reference,
F = P·R / (0.5·P + 0.5·R) (0 when P or R is 0).  An n-gram count is ``len(tokens) - (n - 1)``,
which py-rouge lets go negative for a text shorter than n; that is kept.

ROUGE-L, per sample and reference: for every reference line, the reference positions on the
LCS back-trace against each predicted line are marked (a union over predicted lines; ties in
the LCS table go up, ``vals[i-1][j] >= vals[i][j-1]``, exactly as py-rouge).  A marked token
counts as a hit while the prediction still has an unused copy of it; that budget is shared by
all lines of one reference.  (py-rouge also decrements the *reference's* budget, but under the
token's position instead of the token, so that check never fails; it is omitted here because
it cannot change a number.)  Hits, the prediction's token count and the reference's token
count are summed over references, then F as above.

The corpus score is the mean of the per-sample F values.  Scores here are F x 100.
Pure Python: no torch, no rouge-score.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Hashable, Sequence

from harness.metrics.errors import MetricError
from harness.metrics.rouge import mean_of_samples
from harness.metrics.text import get_mecab

COMPETITION_TYPES: tuple[str, ...] = ("rouge1", "rouge2", "rougeL")
LENGTH_LIMIT = 1000
ALPHA = 0.5
# One character at a time, as the competition scorer substitutes.
_REMOVE_CHAR = re.compile("[^A-Za-z0-9가-힣]")

Tokenize = Callable[[str], Sequence[str]]


def _mecab_morphs(text: str) -> list[str]:
    return list(get_mecab().morphs(text)) if text else []


def _normalize(text: str) -> str:
    return _REMOVE_CHAR.sub(" ", unicodedata.normalize("NFC", text).lower()).strip()


def _tokens(text: str, tokenize: Tokenize) -> list[str]:
    # The scorer joins the morphemes with spaces and later splits on whitespace.
    return " ".join(tokenize(_normalize(text))).split()


def whole_tokens(text: str, tokenize: Tokenize = _mecab_morphs, length_limit: int = LENGTH_LIMIT) -> list[str]:
    """The tokens ROUGE-N sees: the lines joined, the first ``length_limit`` words kept."""
    joined = " ".join(text.split("\n"))
    if length_limit:
        joined = " ".join(joined.split()[:length_limit])
    return _tokens(joined, tokenize)


def sentence_tokens(text: str, tokenize: Tokenize = _mecab_morphs, length_limit: int = LENGTH_LIMIT) -> list[list[str]]:
    """The token lists ROUGE-L sees, one per line, after the word limit."""
    lines = text.split("\n")
    if length_limit:
        kept: list[str] = []
        count = 0
        for line in lines:
            words = line.strip().split()
            if count + len(words) < length_limit:
                kept.append(" ".join(words))
                count += len(words)
            else:
                kept.append(" ".join(words[: length_limit - count]))
                break
        lines = kept
    return [_tokens(line, tokenize) for line in lines]


def f_score(predicted: float, reference: float, overlap: float, alpha: float = ALPHA) -> float:
    """py-rouge's P, R and F (alpha-weighted harmonic mean), as a fraction."""
    precision = 0.0 if predicted == 0 else overlap / float(predicted)
    recall = 0.0 if reference == 0 else overlap / float(reference)
    if recall == 0.0 or precision == 0.0:
        return 0.0
    return precision * recall / ((1 - alpha) * precision + alpha * recall)


def ngram_counts(hyp: list[str], ref: list[str], n: int) -> tuple[int, int, int]:
    """(predicted n-grams, reference n-grams, clipped overlap) for one reference."""
    hyp_grams = Counter(tuple(hyp[i : i + n]) for i in range(len(hyp) - n + 1))
    ref_grams = Counter(tuple(ref[i : i + n]) for i in range(len(ref) - n + 1))
    overlap = sum(min(hyp_grams[g], ref_grams[g]) for g in hyp_grams.keys() & ref_grams.keys())
    return len(hyp) - (n - 1), len(ref) - (n - 1), overlap


def _mark_lcs(ref: list[str], hyp: list[str], mask: list[int]) -> None:
    """Mark the reference positions on py-rouge's LCS back-trace of (ref, hyp)."""
    m, n = len(ref), len(hyp)
    vals = [[0] * (n + 1) for _ in range(m + 1)]
    dirs = [[""] * (n + 1) for _ in range(m + 1)]
    for i in range(1, m + 1):
        for j in range(1, n + 1):
            if ref[i - 1] == hyp[j - 1]:
                vals[i][j] = vals[i - 1][j - 1] + 1
                dirs[i][j] = "|"
            elif vals[i - 1][j] >= vals[i][j - 1]:
                vals[i][j] = vals[i - 1][j]
                dirs[i][j] = "^"
            else:
                vals[i][j] = vals[i][j - 1]
                dirs[i][j] = "<"
    while m != 0 and n != 0:
        if dirs[m][n] == "|":
            m -= 1
            n -= 1
            mask[m] = 1
        elif dirs[m][n] == "^":
            m -= 1
        else:
            n -= 1


def lcs_counts(hyp_lines: list[list[str]], ref_lines: list[list[str]]) -> tuple[int, int, int]:
    """(predicted tokens, reference tokens, union-LCS hits) for one reference."""
    budget = Counter(token for line in hyp_lines for token in line)
    predicted = sum(len(line) for line in hyp_lines)
    reference = sum(len(line) for line in ref_lines)
    hits = 0
    for ref in ref_lines:
        mask = [0] * len(ref)
        for hyp in hyp_lines:
            _mark_lcs(ref, hyp, mask)
        for position, marked in enumerate(mask):
            token = ref[position]
            if marked and budget[token] > 0:
                budget[token] -= 1
                hits += 1
    return predicted, reference, hits


class CompetitionRouge:
    """The competition scorer for one tokenizer (MeCab-ko morphemes by default)."""

    def __init__(
        self,
        tokenize: Tokenize | None = None,
        rouge_types: Sequence[str] = COMPETITION_TYPES,
        length_limit: int = LENGTH_LIMIT,
    ):
        bad = [t for t in rouge_types if t not in COMPETITION_TYPES]
        if bad or not rouge_types:
            hint = (
                "; its rougeL is already the union LCS over the summary's lines, use rougeL"
                if "rougeLsum" in bad
                else ""
            )
            raise MetricError(
                f"rouge scorer 'korean_competition': no rouge type(s) {bad}; it computes "
                f"{', '.join(COMPETITION_TYPES)}{hint}"
            )
        self.tokenize = tokenize or _mecab_morphs
        self.rouge_types = tuple(rouge_types)
        self.length_limit = length_limit

    def _check(self, text, sample: Hashable, field_name: str) -> str:
        if not isinstance(text, str):
            raise MetricError(
                f"rouge: sample {sample} {field_name} must be a str, got {type(text).__name__}; convert None to ''"
            )
        if field_name != "prediction" and not _tokens(text, self.tokenize):
            raise MetricError(
                f"rouge: sample {sample} {field_name} {text[:40]!r} yields no tokens (it has no "
                "letters or digits); fix the reference or drop the sample"
            )
        return text

    def score(self, prediction: str, references: Sequence[str], sample: Hashable = "?") -> dict[str, float]:
        """F x 100 per rouge type; several references are summed, not maxed."""
        if isinstance(references, str):
            references = [references]
        if len(references) == 0:
            raise MetricError(f"rouge: sample {sample} has no references; add one or drop it")
        prediction = self._check(prediction, sample, "prediction")
        refs = [self._check(r, sample, f"references[{i}]") for i, r in enumerate(references)]
        scores: dict[str, float] = {}
        for rouge_type in self.rouge_types:
            totals = [0, 0, 0]
            if rouge_type == "rougeL":
                hyp_lines = sentence_tokens(prediction, self.tokenize, self.length_limit)
                for ref in refs:
                    counts = lcs_counts(hyp_lines, sentence_tokens(ref, self.tokenize, self.length_limit))
                    totals = [a + b for a, b in zip(totals, counts)]
            else:
                n = int(rouge_type[-1])
                hyp = whole_tokens(prediction, self.tokenize, self.length_limit)
                for ref in refs:
                    counts = ngram_counts(hyp, whole_tokens(ref, self.tokenize, self.length_limit), n)
                    totals = [a + b for a, b in zip(totals, counts)]
            scores[rouge_type] = 100.0 * f_score(*totals)
        return scores

    def corpus(self, predictions: Sequence[str], references: Sequence[Sequence[str] | str]) -> dict[str, float]:
        """Mean of the per-sample F values (x 100), as the competition reports."""

        return mean_of_samples(self.score, self.rouge_types, predictions, references)
