"""`scorer: korean_competition` against values worked out by hand from the NIKL scorer's definition
(rouge_metric.py of teddysum/korean_evaluation, a py-rouge derivative: counts summed over references,
F = P·R / (0.5·P + 0.5·R), ROUGE-L a union LCS over newline-split lines with a shared token budget,
1,000 raw whitespace words kept, MeCab-ko morphemes of the normalised text).

MeCab-ko splits the texts used here as
  "비가 온다"      → 비 가 온다            "바람이 분다" → 바람 이 분다
  "오늘 비가 온다" → 오늘 비 가 온다       "비가 그쳤다" → 비 가 그쳤 다
"""

from fractions import Fraction as F

import pytest

from harness.metrics import MetricError, build_metric, tokenize
from harness.metrics.rouge_competition import CompetitionRouge, sentence_tokens, whole_tokens


def scores(prediction, references):
    return CompetitionRouge().score(prediction, references)


def close(value: float, fraction: F) -> None:
    assert value == pytest.approx(100 * float(fraction), abs=1e-9)


def test_tokens_used_below():
    assert tokenize("비가 온다", "mecab") == ["비", "가", "온다"]
    assert tokenize("바람이 분다", "mecab") == ["바람", "이", "분다"]
    assert tokenize("오늘 비가 온다", "mecab") == ["오늘", "비", "가", "온다"]
    assert tokenize("비가 그쳤다", "mecab") == ["비", "가", "그쳤", "다"]


def test_multiple_references_sum_counts_instead_of_max():
    s = scores("오늘 비가 온다", ["비가 온다", "바람이 분다"])
    # ROUGE-1: overlap 3 + 0 = 3; predicted 4 + 4 = 8 (counted once per reference); reference 3 + 3 = 6.
    #   P = 3/8, R = 3/6 -> F = 2PR/(P+R) = (3/8)/(7/8) = 3/7   (max over references would give 6/7)
    close(s["rouge1"], F(3, 7))
    # ROUGE-2: overlap 2 (비가, 가온다) + 0; predicted 3 + 3 = 6; reference 2 + 2 = 4.
    #   P = 1/3, R = 1/2 -> F = (1/3)/(5/6) = 2/5
    close(s["rouge2"], F(2, 5))
    # ROUGE-L: LCS hits 3 + 0; predicted 4 + 4; reference 3 + 3 -> as ROUGE-1, 3/7
    close(s["rougeL"], F(3, 7))


def test_several_predicted_lines_union_lcs_with_repeated_tokens():
    s = scores("비가 온다\n비가 온다", ["비가 온다 비가 그쳤다"])
    # ROUGE-N ignores the lines: predicted 비 가 온다 비 가 온다 (6), reference 비 가 온다 비 가 그쳤 다 (7).
    # ROUGE-1: clipped overlap 비 2 + 가 2 + 온다 min(2, 1) = 5 -> F = 2*5/(6+7) = 10/13
    close(s["rouge1"], F(10, 13))
    # ROUGE-2: predicted 5 bigrams (비가 x2, 가온다 x2, 온다비), reference 6 (비가 x2, 가온다, 온다비,
    #   가그쳤, 그쳤다); overlap 2 + 1 + 1 = 4 -> P = 4/5, R = 4/6 -> F = (16/15)/(22/15) = 8/11
    close(s["rouge2"], F(8, 11))
    # ROUGE-L: each predicted line's LCS back-trace (ties go up) marks reference positions 0,1,2 (the
    #   first 비 가 온다); the union is still {0,1,2}, so 3 hits.  Predicted 6 tokens, reference 7:
    #   P = 1/2, R = 3/7 -> F = (3/7)/(13/14) = 6/13   (a plain LCS over the whole text gives 10/13)
    close(s["rougeL"], F(6, 13))


def test_token_budget_is_shared_by_reference_lines():
    s = scores("비가 온다", ["비가 온다\n비가 온다"])
    # ROUGE-L: reference line 1 hits 비 가 온다 and spends the prediction's only copy of each;
    #   line 2 finds them marked but the budget empty: 3 hits.  Predicted 3, reference 6:
    #   P = 1, R = 1/2 -> F = 2/3
    close(s["rougeL"], F(2, 3))
    # ROUGE-1: overlap 3 of predicted 3, reference 6 -> 2/3.
    close(s["rouge1"], F(2, 3))
    # ROUGE-2: predicted 2 bigrams, reference 5 (비가 x2, 가온다 x2, 온다비); overlap 2:
    #   P = 1, R = 2/5 -> F = (4/5)/(7/5) = 4/7
    close(s["rouge2"], F(4, 7))


def test_short_reference_counts_len_minus_n_plus_1():
    s = scores("비가 온다", ["비", "비가 온다"])
    # ROUGE-1: predicted 3 + 3 = 6, reference 1 + 3 = 4, overlap 1 + 3 = 4 -> P = 2/3, R = 1 -> 4/5
    close(s["rouge1"], F(4, 5))
    # ROUGE-2: the one-token reference has 1 - 1 = 0 bigrams; predicted 2 + 2 = 4, reference 0 + 2,
    #   overlap 0 + 2 -> P = 1/2, R = 1 -> 2/3
    close(s["rouge2"], F(2, 3))
    # ROUGE-L: a fresh prediction budget per reference: hits 1 + 3 = 4, predicted 6, reference 4 -> 4/5
    close(s["rougeL"], F(4, 5))


def test_thousand_word_limit_counts_raw_words_before_normalisation():
    prediction = "! " * 999 + "비가 온다"
    # 1,001 whitespace words; the first 1,000 are 999 "!" and "비가"; "!" then normalises away.
    assert whole_tokens(prediction) == ["비", "가"]
    assert sentence_tokens(prediction) == [["비", "가"]]
    s = scores(prediction, ["비가 온다"])
    # ROUGE-1: overlap 2, predicted 2, reference 3 -> P = 1, R = 2/3 -> F = 4/5
    close(s["rouge1"], F(4, 5))
    # ROUGE-2: overlap 1 (비가), predicted 1, reference 2 -> P = 1, R = 1/2 -> F = 2/3
    close(s["rouge2"], F(2, 3))
    close(s["rougeL"], F(4, 5))
    # Without the limit all three would be 100.
    assert set(CompetitionRouge(length_limit=0).score(prediction, ["비가 온다"]).values()) == {100.0}


def test_line_limit_cuts_the_line_that_reaches_it():
    # Line 1: 999 words (998 "!" and 비가), kept whole; line 2 "온다 바람이" would reach 1,001 -> cut to "온다".
    text = "! " * 998 + "비가\n온다 바람이\n오늘"
    assert sentence_tokens(text) == [["비", "가"], ["온다"]]
    assert whole_tokens(text) == ["비", "가", "온다"]


def test_corpus_is_the_mean_of_per_sample_f():
    scorer = CompetitionRouge()
    got = scorer.corpus(["오늘 비가 온다", "비가 온다"], [["비가 온다", "바람이 분다"], ["비가 온다\n비가 온다"]])
    # ROUGE-1: (3/7 + 2/3) / 2 = 23/42
    close(got["rouge1"], F(23, 42))


def test_identical_texts_score_100_and_normalisation_applies():
    text = "KBS 뉴스: 오늘 서울은 30도!\n내일은 비가 온다."
    assert set(scores(text, [text]).values()) == {100.0}
    assert set(scores(text.upper(), [text.replace("!", " ")]).values()) == {100.0}


def test_registry_labels_and_errors():
    metric = build_metric("rouge1", {"scorer": "korean_competition"})
    assert metric.label == "rouge1[mecab,korean_competition]"
    assert metric.version.startswith("korean_competition (NIKL rouge_metric.py, 1000-word limit, NFC); python-mecab-ko")
    assert metric.per_sample("오늘 비가 온다", ["비가 온다", "바람이 분다"]) == pytest.approx(300 / 7)
    assert build_metric("rougeL", {"scorer": "korean_competition", "tokenizer": "char"}).label == (
        "rougeL[char,korean_competition]"
    )
    with pytest.raises(MetricError, match="use rougeL"):
        build_metric("rougeLsum", {"scorer": "korean_competition"})
    with pytest.raises(MetricError, match="not 'rouge-score'"):
        build_metric("rouge1", {"scorer": "korean_competition", "tokenizer": "rouge-score"})
    with pytest.raises(MetricError, match="unknown scorer"):
        build_metric("rouge1", {"scorer": "nikl"})


def test_text_without_tokens_names_the_sample():
    with pytest.raises(MetricError, match="sample 4 references\\[1\\]"):
        CompetitionRouge().score("비가 온다", ["비가", "ㅋㅋ!!"], sample=4)
    assert CompetitionRouge().score("", ["비가 온다"])["rouge1"] == 0.0
