"""Issue #27, points 1-4: degenerate predictions score, ROUGE-Lsum and the rouge-score tokenizer
mean rouge-score's own behaviour, Hangul is never silently dropped, and NFD text scores as NFC.

Every expected value comes from the reference library (rouge-score, sacrebleu), from MeCab-ko
called directly, or from arithmetic written out here; never from harness's own scorers.
"""

import random
import unicodedata

import mecab
import pytest
import sacrebleu
from rouge_score import rouge_scorer, tokenizers

from harness.metrics import (
    KoreanRouge,
    MetricError,
    build_metric,
    korquad_exact_match,
    korquad_f1,
    rouge_scores,
    squad_exact_match,
    squad_f1,
)
from harness.metrics.rouge_competition import CompetitionRouge

DEGENERATE = ["!!!", "……", "...", "?!", "ㅋㅋㅋ", "   ", ""]
KO_REF = "정부는 내년 예산안을 국회에 제출했다."


class _MecabTokens(tokenizers.Tokenizer):
    """MeCab-ko morphemes of the text as the Korean benchmarks normalise it, built here from
    python-mecab-ko directly so that rouge-score checks harness's tokenizer from outside."""

    def tokenize(self, text):
        import re

        text = re.sub(r"[^A-Za-z0-9가-힣]+", " ", unicodedata.normalize("NFC", text).lower())
        return mecab.MeCab().morphs(text) if text.strip() else []


def _rouge_score(types, target, prediction, tokenizer=None):
    scorer = rouge_scorer.RougeScorer(list(types), tokenizer=tokenizer)
    return {k: 100.0 * v.fmeasure for k, v in scorer.score(target, prediction).items()}


@pytest.mark.parametrize("prediction", DEGENERATE)
@pytest.mark.parametrize("tokenizer", ["mecab", "whitespace", "char", "auto"])
def test_degenerate_prediction_scores_what_rouge_score_gives(prediction, tokenizer):
    ours = rouge_scores(prediction, [KO_REF], tokenizer=tokenizer)
    theirs = _rouge_score(ours, KO_REF, prediction, _MecabTokens())
    assert ours == theirs == dict.fromkeys(ours, 0.0)


@pytest.mark.parametrize("prediction", DEGENERATE)
def test_degenerate_prediction_under_rouge_score_tokenizer(prediction):
    ref = "The cabinet sent its budget to parliament."
    ours = rouge_scores(prediction, [ref], tokenizer="rouge-score")
    assert ours == _rouge_score(ours, ref, prediction)


@pytest.mark.parametrize("prediction", DEGENERATE)
def test_degenerate_prediction_under_korean_competition_scores_zero(prediction):
    # py-rouge's F is 0 whenever the overlap is 0, and a text with no tokens overlaps nothing;
    # its n-gram count (0, or -1 for bigrams) only ever divides a zero overlap.
    for rouge_type in ("rouge1", "rouge2", "rougeL"):
        metric = build_metric(rouge_type, {"scorer": "korean_competition"})
        assert metric.per_sample(prediction, [KO_REF, "예산안이 제출됐다"]) == 0.0


@pytest.mark.parametrize("prediction", DEGENERATE)
def test_degenerate_prediction_in_qa_and_bleu(prediction):
    # The official KorQuAD / SQuAD scripts normalise "!!!" to "" and score it 0.
    assert korquad_exact_match(prediction, ["국회"]) == korquad_f1(prediction, ["국회"]) == 0.0
    assert squad_exact_match(prediction, ["parliament"]) == squad_f1(prediction, ["parliament"]) == 0.0
    bleu = build_metric("bleu", {"tokenize": "13a"}).corpus([prediction, "the cat sat"], [["a b c"], ["the cat sat"]])
    assert bleu == sacrebleu.corpus_bleu([prediction, "the cat sat"], [["a b c", "the cat sat"]]).score


@pytest.mark.parametrize("scorer", [KoreanRouge(tokenizer="mecab"), CompetitionRouge()])
def test_only_a_reference_without_tokens_is_an_error(scorer):
    for bad in ("!!!", "……", ""):
        with pytest.raises(MetricError, match=r"sample 4 references\[1\] .*no tokens.*fix the reference"):
            scorer.score("정상 요약", ["정상", bad], sample=4)


def test_ascii_punctuation_reference_hint_does_not_say_non_ascii():
    with pytest.raises(MetricError) as err:
        rouge_scores("ok", ["!!!"], tokenizer="rouge-score", sample=0)
    assert "non-ASCII" not in str(err.value) and "no ASCII letters or digits" in str(err.value)


def test_lsum_with_rouge_score_tokenizer_is_rouge_scores_own():
    ours = rouge_scores("the dog ran. the cat sat.", ["the cat sat. the dog ran."], tokenizer="rouge-score")
    # rouge-score splits sentences at newlines only: one line each, LCS "the cat sat" of 6 tokens.
    assert ours["rougeLsum"] == pytest.approx(50.0)
    assert ours == _rouge_score(ours, "the cat sat. the dog ran.", "the dog ran. the cat sat.")


def test_lsum_equals_rouge_score_on_random_english_pairs():
    rng = random.Random(27)
    words = [
        "the",
        "cat",
        "dog",
        "sat",
        "ran",
        "on",
        "a",
        "mat",
        "and",
        "then",
        "it",
        "was",
        "not",
        "amused",
        "by",
        "rain",
    ]

    def text():
        sentences = [
            " ".join(rng.choices(words, k=rng.randint(2, 7))) + rng.choice([".", "!", "?"])
            for _ in range(rng.randint(1, 4))
        ]
        return rng.choice([" ", "\n"]).join(sentences)

    for _ in range(248):
        pred, ref = text(), text()
        ours = rouge_scores(pred, [ref], tokenizer="rouge-score")
        assert ours == _rouge_score(ours, ref, pred), (pred, ref)


def test_sentence_split_is_named_in_the_label():
    metric = build_metric("rougeLsum", {"tokenizer": "whitespace", "sentence_split": True})
    assert metric.label == "rougeLsum[whitespace,sentences]"
    # Split, each sentence finds its match: the reference run on the split lines agrees.
    assert metric.per_sample("the dog ran. the cat sat.", ["the cat sat. the dog ran."]) == pytest.approx(
        _rouge_score(["rougeLsum"], "the cat sat.\nthe dog ran.", "the dog ran.\nthe cat sat.")["rougeLsum"]
    )
    with pytest.raises(MetricError, match="unknown option"):
        build_metric("rouge1", {"sentence_split": True})


@pytest.mark.parametrize("text", ["삼성 Galaxy S24", "Galaxy S24 출시", "S24는 좋다"])
@pytest.mark.parametrize("where", ["prediction", "reference"])
def test_hangul_under_rouge_score_tokenizer_is_an_error(text, where):
    other = "Galaxy S24 launch"
    pred, ref = (text, other) if where == "prediction" else (other, text)
    with pytest.raises(MetricError, match=r"sample 9 .*holds Hangul.*use tokenizer='mecab'"):
        rouge_scores(pred, [ref], tokenizer="rouge-score", sample=9)


def test_auto_on_mostly_english_keeps_hangul():
    # rouge-score itself scores this pair 100: it deletes 삼성 and 애플.
    assert _rouge_score(["rouge1"], "애플 Galaxy S24", "삼성 Galaxy S24")["rouge1"] == 100.0
    metric = build_metric("rouge1", {}, [["애플 Galaxy S24"]])
    # 2 of 3 words shared (galaxy, s24): F = 2/3.
    assert metric.per_sample("삼성 Galaxy S24", ["애플 Galaxy S24"]) == pytest.approx(200 / 3)


def test_auto_whitespace_equals_rouge_score_on_english():
    metric = build_metric("rougeL", {}, [["The quick brown fox."]])
    assert metric.label == "rougeL[whitespace]"
    pred, ref = "A quick brown fox, jumping!", "The quick brown fox jumped over it."
    assert metric.per_sample(pred, [ref]) == _rouge_score(["rougeL"], ref, pred)["rougeL"]


@pytest.mark.parametrize("tokenizer", ["mecab", "whitespace", "char", "kiwi"])
def test_nfd_reference_scores_as_its_nfc_copy(tokenizer):
    if tokenizer == "kiwi":
        pytest.importorskip("kiwipiepy")
    nfd = unicodedata.normalize("NFD", KO_REF)
    assert nfd != KO_REF
    ours = rouge_scores(KO_REF, [nfd], tokenizer=tokenizer)
    assert ours == dict.fromkeys(ours, 100.0)


def test_nfd_under_competition_scores_as_nfc():
    nfd = unicodedata.normalize("NFD", KO_REF)
    for rouge_type in ("rouge1", "rouge2", "rougeL"):
        metric = build_metric(rouge_type, {"scorer": "korean_competition"})
        assert metric.per_sample(KO_REF, [nfd]) == 100.0
        assert "NFC" in metric.version


def test_nfd_hangul_is_caught_under_rouge_score_tokenizer():
    with pytest.raises(MetricError, match="holds Hangul"):
        rouge_scores("budget 2025", [unicodedata.normalize("NFD", "예산 2025")], tokenizer="rouge-score")


def test_korquad_does_not_normalise_unicode_as_the_official_script():
    # evaluate-v1.0.py compares code points: an NFD copy is not an exact match.
    assert korquad_exact_match(unicodedata.normalize("NFD", "국회"), ["국회"]) == 0.0
