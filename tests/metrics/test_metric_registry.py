import pytest

from harness.metrics import MetricError, available_metrics, build_metric, corpus_bleu, korquad_f1, rouge_scores

KO_REFS = [["아버지가 방에 들어가셨다."], ["오늘 날씨가 아주 좋습니다."]]
KO_HYPS = ["아버지가 방에 들어가신다.", "오늘은 날씨가 좋습니다."]


def test_available_names():
    assert available_metrics() == [
        "exact_match",
        "f1",
        "squad_exact_match",
        "squad_f1",
        "contains",
        "squad_contains",
        "rouge1",
        "rouge2",
        "rougeL",
        "rougeLsum",
        "bleu",
        "chrf",
    ]


def test_unknown_name_suggests_nearest():
    with pytest.raises(MetricError, match="did you mean 'rougeL'"):
        build_metric("rougel")
    with pytest.raises(MetricError, match="did you mean 'exact_match'"):
        build_metric("exact-match")


def test_unknown_option():
    with pytest.raises(MetricError, match=r"unknown option.*tokenize"):
        build_metric("rouge1", {"tokenize": "mecab"})
    with pytest.raises(MetricError, match="takes no options"):
        build_metric("f1", {"tokenizer": "char"})


def test_rouge_auto_uses_reference_sample_and_labels_it():
    metric = build_metric("rouge1", references_sample=KO_REFS)
    assert metric.label == "rouge1[mecab]"
    assert "python-mecab-ko" in metric.version
    expected = rouge_scores(KO_HYPS[0], KO_REFS[0], tokenizer="mecab")["rouge1"]
    assert metric.per_sample(KO_HYPS[0], KO_REFS[0]) == expected
    assert build_metric("rougeLsum", {"tokenizer": "char"}).label == "rougeLsum[char]"
    with pytest.raises(MetricError, match="needs references"):
        build_metric("rouge2")


def test_qa_metrics_and_corpus_mean():
    metric = build_metric("f1")
    assert (metric.label, metric.higher_is_better) == ("f1", True)
    preds, golds = ["세종대왕이", "1443년"], [["세종대왕"], ["1446년"]]
    expected = (korquad_f1(preds[0], golds[0]) + korquad_f1(preds[1], golds[1])) / 2
    assert metric.corpus(preds, golds) == pytest.approx(expected)


def test_bleu_and_chrf():
    bleu = build_metric("bleu", references_sample=KO_REFS)
    assert bleu.label == "bleu[mecab]" and bleu.per_sample is None
    assert bleu.corpus(KO_HYPS, KO_REFS) == corpus_bleu(KO_HYPS, KO_REFS, tokenize="mecab").score
    assert build_metric("bleu", {"tokenize": "13a"}).label == "bleu[13a]"
    assert build_metric("chrf").label == "chrf"
    assert build_metric("chrf", {"word_order": 2}).label == "chrf++"
