"""Tokenizers added with issue #9: kiwi, the auto note, and rouge-score's trap on Korean."""

import builtins
from pathlib import Path

import pytest
from rouge_score import rouge_scorer

from harness.metrics import KoreanRouge, MetricError, build_metric, rouge_scores, tokenize
from harness.metrics import rouge as rouge_module
from harness.metrics.registry import auto_notes

KO_PRED = "아버지가 방에 들어가신다."
KO_REF = "아버지가 방에 들어가셨다."
MODULES = Path(__file__).resolve().parents[2] / "harness" / "metrics" / "evaluate_modules"


def test_kiwi_by_hand():
    pytest.importorskip("kiwipiepy")
    assert tokenize(KO_PRED, "kiwi") == ["아버지", "가", "방", "에", "들어가", "시", "ᆫ다"]
    assert tokenize(KO_REF, "kiwi") == ["아버지", "가", "방", "에", "들어가", "시", "었", "다"]
    scores = rouge_scores(KO_PRED, [KO_REF], tokenizer="kiwi")
    # unigrams: 6 shared of 7 and 8 -> F = 12/15.  bigrams: 5 shared (아버지가 가방 방에 에들어가 들어가시)
    # of 6 and 7 -> F = 10/13.  LCS 6 -> 12/15.
    assert scores["rouge1"] == pytest.approx(1200 / 15)
    assert scores["rouge2"] == pytest.approx(1000 / 13)
    assert scores["rougeL"] == pytest.approx(1200 / 15)
    metric = build_metric("rouge1", {"tokenizer": "kiwi"})
    assert metric.label == "rouge1[kiwi]" and metric.version.startswith("NFC; kiwipiepy ")


def test_kiwi_missing_says_how_to_install(monkeypatch):
    real_import = builtins.__import__

    def no_kiwi(name, *args, **kwargs):
        if name == "kiwipiepy":
            raise ImportError("No module named 'kiwipiepy'")
        return real_import(name, *args, **kwargs)

    rouge_module.get_kiwi.cache_clear()
    monkeypatch.setattr(builtins, "__import__", no_kiwi)
    try:
        with pytest.raises(MetricError, match=r"pip install 'harness\[kiwi\]'"):
            KoreanRouge(tokenizer="kiwi")
    finally:
        rouge_module.get_kiwi.cache_clear()


@pytest.mark.parametrize(
    "options",
    [
        {"tokenizer": "mecab"},
        {"tokenizer": "whitespace"},
        {"tokenizer": "kiwi"},
        {"tokenizer": "char"},
        {"tokenizer": "auto"},
        {"scorer": "korean_competition"},
    ],
)
def test_identical_korean_scores_100_with_every_tokenizer(options):
    if options.get("tokenizer") == "kiwi":
        pytest.importorskip("kiwipiepy")
    text = "오늘 서울의 낮 최고기온은 30도입니다.\n내일은 비가 오겠습니다."
    for rouge_type in ("rouge1", "rouge2", "rougeL"):
        assert build_metric(rouge_type, options, [[text]]).per_sample(text, [text]) == 100.0


def test_rouge_score_tokenizer_on_korean_is_refused_not_100():
    pred, ref = "3월 10일 서울에서 비가 왔다", "3월 10일 부산은 맑았다"
    # rouge-score itself keeps only "3" and "10" of each and calls the pair identical.
    assert rouge_scorer.RougeScorer(["rouge1"]).score(ref, pred)["rouge1"].fmeasure == 1.0
    with pytest.raises(MetricError, match=r"sample 2 prediction .* holds Hangul .* keeps only '3 10'.*mecab"):
        rouge_scores(pred, [ref], tokenizer="rouge-score", sample=2)
    assert rouge_scores(pred, [ref], tokenizer="mecab")["rouge1"] < 60


def test_auto_choice_is_recorded_in_version_and_logged_once():
    refs = [["오늘은 비가 온다"], ["내일은 맑다 OK"]]
    metrics = [build_metric(t, {}, refs) for t in ("rouge1", "rouge2")]
    assert metrics[0].label == "rouge1[mecab]"
    # 12 Hangul syllables of 14 letters (O, K) -> 86%
    assert metrics[0].version.startswith("auto → mecab (references 86% Hangul); NFC; python-mecab-ko ")
    assert auto_notes(metrics) == ["rouge tokenizer auto → mecab (references 86% Hangul)"]
    english = build_metric("rouge1", {}, [["The cat sat."]])
    assert english.label == "rouge1[whitespace]"
    assert auto_notes([english]) == ["rouge tokenizer auto → whitespace (references 0% Hangul)"]
    assert auto_notes([build_metric("rouge1", {"tokenizer": "mecab"})]) == []


def test_evaluate_module_takes_scorer():
    evaluate = pytest.importorskip("evaluate")
    module = evaluate.load(str(MODULES / "korean_rouge"))
    got = module.compute(
        predictions=["오늘 비가 온다"], references=[["비가 온다", "바람이 분다"]], scorer="korean_competition"
    )
    assert got["rouge1"] == pytest.approx(300 / 7) and got["rouge2"] == pytest.approx(40.0)
    assert got["tokenizer"] == "mecab" and got["scorer"] == "korean_competition"
    assert "rougeLsum" not in got
    plain = module.compute(predictions=["오늘 비가 온다"], references=[["비가 온다", "바람이 분다"]])
    assert plain["rouge1"] == pytest.approx(100 * 6 / 7) and plain["scorer"] == "rouge-score"
