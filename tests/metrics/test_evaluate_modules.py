from pathlib import Path

import pytest

from harness.metrics import KoreanRouge, korquad_exact_match, korquad_f1

evaluate = pytest.importorskip("evaluate")

MODULES = Path(__file__).resolve().parents[2] / "harness" / "metrics" / "evaluate_modules"


def test_korquad_module_matches_functions():
    preds = ["세종대왕", "1443년", "“세종”"]
    refs = [["세종대왕", "세종"], ["1446년"], ["세종"]]
    module = evaluate.load(str(MODULES / "korquad"))
    got = module.compute(predictions=preds, references=refs)
    n = len(preds)
    assert got["exact_match"] == pytest.approx(sum(korquad_exact_match(p, r) for p, r in zip(preds, refs)) / n)
    assert got["f1"] == pytest.approx(sum(korquad_f1(p, r) for p, r in zip(preds, refs)) / n)


@pytest.mark.parametrize("tokenizer", ["mecab", "char", "auto"])
def test_korean_rouge_module_matches_functions(tokenizer):
    preds = ["아버지가 방에 들어가신다.", "오늘은 날씨가 좋습니다. 내일은 비."]
    refs = ["아버지가 방에 들어가셨다.", "오늘 날씨가 좋다. 내일은 비가 온다."]
    module = evaluate.load(str(MODULES / "korean_rouge"))
    got = module.compute(predictions=preds, references=refs, tokenizer=tokenizer)
    scorer = KoreanRouge(tokenizer=tokenizer, references_sample=[[r] for r in refs])
    expected = scorer.corpus(preds, [[r] for r in refs])
    assert got["tokenizer"] == scorer.tokenizer
    for key, value in expected.items():
        assert got[key] == pytest.approx(value)


def test_korean_rouge_module_multi_reference_per_sample():
    module = evaluate.load(str(MODULES / "korean_rouge"))
    got = module.compute(
        predictions=["비가 온다"], references=[["눈이 온다", "비가 온다"]], tokenizer="whitespace", use_aggregator=False
    )
    assert got["rouge1"] == [100.0]
