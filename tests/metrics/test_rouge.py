import pytest
from rouge_score import rouge_scorer

from harness.metrics import (
    KoreanRouge,
    MetricError,
    choose_tokenizer,
    resolve_tokenizer,
    rouge_scores,
    split_sentences,
    tokenize,
    tokenizer_version,
)

EN_PRED = "The quick brown fox jumps over the lazy dog. It was not amused!"
EN_REF = "A quick brown fox jumped over a lazy dog. The dog was not amused."
KO_PRED = "아버지가 방에 들어가신다."
KO_REF = "아버지가 방에 들어가셨다."


def _reference(rouge_types, target, prediction):
    scorer = rouge_scorer.RougeScorer(list(rouge_types))
    return {k: 100.0 * v.fmeasure for k, v in scorer.score(target, prediction).items()}


def test_rouge_score_tokenizer_equals_rougescorer_exactly():
    ours = rouge_scores(EN_PRED, [EN_REF], tokenizer="rouge-score")
    theirs = _reference(["rouge1", "rouge2", "rougeL"], EN_REF, EN_PRED)
    theirs.update(_reference(["rougeLsum"], EN_REF, EN_PRED))
    for key in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
        assert ours[key] == theirs[key]


def test_rouge_score_tokenizer_multi_reference_is_max_per_type():
    refs = [EN_REF, "the lazy dog slept"]
    ours = rouge_scores(EN_PRED, refs, tokenizer="rouge-score", rouge_types=["rouge1", "rouge2"])
    per_ref = [_reference(["rouge1", "rouge2"], r, EN_PRED) for r in refs]
    for key in ("rouge1", "rouge2"):
        assert ours[key] == max(p[key] for p in per_ref)


def test_default_rouge_score_would_zero_korean_but_auto_does_not():
    assert _reference(["rouge1"], KO_REF, KO_REF)["rouge1"] == 0.0
    assert choose_tokenizer([KO_REF]) == "mecab"
    assert rouge_scores(KO_REF, [KO_REF], tokenizer="auto")["rouge1"] == 100.0
    assert choose_tokenizer([[EN_REF]]) == "whitespace"


@pytest.mark.parametrize("tok", ["mecab", "whitespace", "char", "auto"])
def test_identical_korean_scores_100(tok):
    text = "오늘 서울의 낮 최고기온은 30도입니다.\n내일은 비가 오겠습니다."
    assert set(rouge_scores(text, [text], tokenizer=tok).values()) == {100.0}


def test_mecab_by_hand():
    assert tokenize(KO_PRED, "mecab") == ["아버지", "가", "방", "에", "들어가", "신다"]
    assert tokenize(KO_REF, "mecab") == ["아버지", "가", "방", "에", "들어가", "셨", "다"]
    scores = rouge_scores(KO_PRED, [KO_REF], tokenizer="mecab")
    # unigrams: 5 shared of 6 and 7 -> F = 2*5/13.  bigrams: 4 shared of 5 and 6 -> 8/11.
    assert scores["rouge1"] == pytest.approx(1000.0 / 13)
    assert scores["rouge2"] == pytest.approx(800.0 / 11)
    assert scores["rougeL"] == pytest.approx(1000.0 / 13)


def test_whitespace_by_hand():
    scores = rouge_scores("한국어 요약 문장입니다", ["한국어 요약 문장이다"], tokenizer="whitespace")
    assert scores["rouge1"] == pytest.approx(200.0 / 3)
    assert scores["rouge2"] == pytest.approx(50.0)


def test_char_by_hand():
    assert tokenize("한국어, 요약!", "char") == ["한", "국", "어", "요", "약"]
    scores = rouge_scores("한국어 요약 문장입니다", ["한국어 요약 문장이다"], tokenizer="char")
    # 10 vs 9 chars, 8 shared (한국어요약문장 + 다): F = 16/19.
    assert scores["rouge1"] == pytest.approx(1600.0 / 19)
    # 9 vs 8 bigrams, 6 shared (한국 국어 어요 요약 약문 문장): F = 12/17.
    assert scores["rouge2"] == pytest.approx(1200.0 / 17)


def test_normalisation_lowercases_and_drops_symbols():
    assert tokenize("KBS뉴스, ㅋㅋ 2024년!", "whitespace") == ["kbs뉴스", "2024년"]


def test_reference_with_no_tokens_raises_naming_the_sample():
    scorer = KoreanRouge(tokenizer="mecab")
    with pytest.raises(MetricError, match=r"sample 3 references\[0\].*no tokens"):
        scorer.score("정상 요약", ["ㅋㅋㅋ!!"], sample=3)
    with pytest.raises(MetricError, match=r"sample 7 references\[0\].*holds Hangul"):
        rouge_scores("hello", ["안녕하세요"], tokenizer="rouge-score", sample=7)
    with pytest.raises(MetricError, match=r"sample 1 references\[0\]"):
        scorer.corpus(["좋은 요약", "요약"], [["좋은 요약"], ["…"]])


def test_blank_prediction_scores_zero_not_error():
    assert rouge_scores("", ["정상 요약"], tokenizer="mecab")["rouge1"] == 0.0


def test_lsum_sentence_split_is_an_option():
    pred = "비가 왔다. 바람이 불었다."
    ref = "바람이 불었다. 비가 왔다."
    split = KoreanRouge(tokenizer="whitespace", sentence_split=True)
    scores = split.score(pred, [ref])
    # As one sequence the LCS is 2 of 4 tokens; per sentence each sentence
    # finds its match, so Lsum is perfect.
    assert scores["rougeL"] == pytest.approx(50.0)
    assert scores["rougeLsum"] == pytest.approx(100.0)
    assert split.label("rougeLsum") == "rougeLsum[whitespace,sentences]"
    assert split.label("rougeL") == "rougeL[whitespace]"
    # Without the option the text is one line, as rouge-score sees it.
    assert rouge_scores(pred, [ref], tokenizer="whitespace")["rougeLsum"] == pytest.approx(50.0)


def test_split_sentences():
    text = '나는 밥을 먹었다. 정말? "좋았다." 값은 3.14이다.\nOK'
    assert split_sentences(text) == ["나는 밥을 먹었다.", "정말?", '"좋았다."', "값은 3.14이다.", "OK"]


def test_labels_and_versions():
    scorer = KoreanRouge(tokenizer="auto", references_sample=[[KO_REF]])
    assert scorer.tokenizer == "mecab"
    assert scorer.label("rouge1") == "rouge1[mecab]"
    assert "python-mecab-ko" in tokenizer_version("mecab")
    assert tokenizer_version("rouge-score").startswith("rouge-score ")


def test_bad_options():
    with pytest.raises(MetricError, match="unknown tokenizer"):
        resolve_tokenizer("okt")
    with pytest.raises(MetricError, match="needs references"):
        resolve_tokenizer("auto")
    with pytest.raises(MetricError, match="rouge type"):
        KoreanRouge(tokenizer="char", rouge_types=["rouge3"])
