import mecab
import pytest
import sacrebleu
from sacrebleu.metrics import BLEU

from harness.metrics import MetricError, corpus_bleu, corpus_chrf

HYPS = ["The cat sat on the mat today.", "It is raining in Seoul again."]
REFS = [["The cat sat on a mat today."], ["It rains in Seoul again.", "Seoul has rain again."]]
KO_HYPS = ["아버지가 방에 들어가신다.", "오늘은 날씨가 아주 좋습니다."]
KO_REFS = [["아버지가 방에 들어가셨다."], ["오늘 날씨가 아주 좋습니다."]]


def test_bleu_equals_sacrebleu_with_variable_reference_counts():
    ours = corpus_bleu(HYPS, REFS, tokenize="13a")
    streams = [[REFS[0][0], REFS[1][0]], [None, REFS[1][1]]]
    assert ours.score == sacrebleu.corpus_bleu(HYPS, streams).score
    assert "tok:13a" in ours.signature


def test_bleu_char_equals_sacrebleu():
    ours = corpus_bleu(KO_HYPS, KO_REFS, tokenize="char")
    theirs = sacrebleu.corpus_bleu(KO_HYPS, [[r[0] for r in KO_REFS]], tokenize="char")
    assert ours.score == theirs.score


def test_bleu_mecab_is_sacrebleu_on_morphemes():
    tagger = mecab.MeCab()
    hyps = [" ".join(tagger.morphs(h)) for h in KO_HYPS]
    refs = [[" ".join(tagger.morphs(r[0])) for r in KO_REFS]]
    ours = corpus_bleu(KO_HYPS, KO_REFS, tokenize="mecab")
    assert ours.score == BLEU(tokenize="none").corpus_score(hyps, refs).score
    assert ours.score > 0
    assert "python-mecab-ko" in ours.signature
    assert corpus_bleu(KO_HYPS, KO_REFS, tokenize="auto").tokenize == "mecab"
    assert corpus_bleu(HYPS, REFS, tokenize="auto").tokenize == "13a"


def test_chrf_equals_sacrebleu():
    ours = corpus_chrf(KO_HYPS, KO_REFS)
    assert ours.score == sacrebleu.corpus_chrf(KO_HYPS, [[r[0] for r in KO_REFS]]).score
    plus = corpus_chrf(HYPS, [[r[0]] for r in REFS], word_order=2)
    assert plus.score == sacrebleu.corpus_chrf(HYPS, [[r[0] for r in REFS]], word_order=2).score


def test_bleu_errors():
    with pytest.raises(MetricError, match="unknown tokenize"):
        corpus_bleu(HYPS, REFS, tokenize="moses")
    with pytest.raises(MetricError, match="2 predictions but 1"):
        corpus_bleu(HYPS, REFS[:1])
    with pytest.raises(MetricError, match="sample 0"):
        corpus_chrf(["x"], [[]])
