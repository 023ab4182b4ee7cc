"""Degeneration statistics not covered by tests/metrics/test_repetition.py: an English loop and a
Korean loop with punctuation checked by hand, and the per-model means written to results.json."""

from __future__ import annotations

import pytest

from harness.metrics.aggregate import repetition_summary
from harness.metrics.repetition import repetition_stats


def test_english_loop_by_hand():
    # 9 words: I think that I think that I think  → unique {I, think, that} = 3
    stats = repetition_stats("I think that I think that I think")
    assert stats.unit == "word" and stats.n_tokens == 8
    assert stats.distinct_1 == pytest.approx(3 / 8)
    # bigrams: (I think)×3, (think that)×2, (that I)×2 → 3 unique of 7
    assert stats.distinct_2 == pytest.approx(3 / 7)
    # "I think that I think" (5 words) occurs twice, overlapping
    assert (stats.longest_repeat, stats.longest_repeat_len, stats.longest_repeat_count) == (
        "I think that I think",
        5,
        2,
    )


def test_korean_punctuation_is_kept():
    # "좋아요." and "좋아요" are different words: punctuation is not stripped
    stats = repetition_stats("좋아요. 정말 좋아요 정말 좋아요.")
    assert stats.n_tokens == 5 and stats.distinct_1 == pytest.approx(3 / 5)
    assert stats.distinct_2 == pytest.approx(4 / 4)
    assert (stats.longest_repeat, stats.longest_repeat_count) == ("좋아요.", 2)


def test_summary_means_and_hit_limit_rate():
    records = [
        {"stop_reason": "length", "repetition": repetition_stats("a a a a").to_dict()},
        {"stop_reason": "eos", "repetition": repetition_stats("the quick brown fox").to_dict()},
        {"stop_reason": "stop", "repetition": repetition_stats("").to_dict()},
    ]
    summary = repetition_summary(records)
    # distinct-1: 1/4, 1, 0 ; distinct-2: 1/3, 1, 0 ; longest repeat: 3 ("a a a" twice), 0, 0
    assert summary["unit"] == "word"
    assert summary["distinct_1"] == pytest.approx((0.25 + 1 + 0) / 3, abs=1e-6)
    assert summary["distinct_2"] == pytest.approx((1 / 3 + 1 + 0) / 3, abs=1e-6)
    assert summary["longest_repeat_len"] == pytest.approx(1.0)
    assert summary["hit_limit_rate"] == pytest.approx(1 / 3, abs=1e-6)
    assert summary["n"] == 3


def test_summary_keeps_word_and_character_figures_apart():
    records = [
        {"stop_reason": "eos", "repetition": repetition_stats("the quick brown fox").to_dict()},  # words
        {"stop_reason": "eos", "repetition": repetition_stats("ㅋㅋㅋㅋ").to_dict()},  # characters
        {"stop_reason": "eos", "repetition": repetition_stats("하하하하하하").to_dict()},  # characters
    ]
    summary = repetition_summary(records)
    # words: distinct-1 1 (one text); characters: 1/4 and 1/6, never mixed with the words' 1
    assert summary["by_unit"]["word"] == {"distinct_1": 1.0, "distinct_2": 1.0, "longest_repeat_len": 0.0, "n": 1}
    assert summary["by_unit"]["char"]["distinct_1"] == pytest.approx((1 / 4 + 1 / 6) / 2)
    assert summary["by_unit"]["char"]["n"] == 2
    assert summary["unit"] == "char" and summary["distinct_1"] == summary["by_unit"]["char"]["distinct_1"]
    assert repetition_summary([{"nll": 1.0, "tokens": 3}]) is None  # perplexity records: nothing to summarise
