import pytest

from harness.metrics import MetricError, repetition_stats


def test_korean_loop_by_hand():
    stats = repetition_stats("나는 밥을 먹었다 나는 밥을 먹었다 나는 밥을")
    assert stats.unit == "word"
    assert stats.n_tokens == 8
    assert stats.distinct_1 == pytest.approx(3 / 8)
    # bigrams: 7 total, unique {나는 밥을, 밥을 먹었다, 먹었다 나는} = 3.
    assert stats.distinct_2 == pytest.approx(3 / 7)
    assert stats.longest_repeat == "나는 밥을 먹었다 나는 밥을"
    assert (stats.longest_repeat_len, stats.longest_repeat_count) == (5, 2)


def test_english_no_repeat():
    stats = repetition_stats("the quick brown fox")
    assert (stats.distinct_1, stats.distinct_2) == (1.0, 1.0)
    assert (stats.longest_repeat_len, stats.longest_repeat_count, stats.longest_repeat) == (0, 0, "")


def test_most_frequent_wins_among_equal_length():
    # 1-grams only repeat; "b" occurs 3 times, "a" twice.
    stats = repetition_stats("a b c b d a b")
    assert stats.longest_repeat_len == 2  # "a b" twice
    assert stats.longest_repeat == "a b"
    stats = repetition_stats("a b a b b")
    assert stats.longest_repeat == "a b"


def test_overlapping_occurrences_count():
    stats = repetition_stats("a a a")
    assert (stats.longest_repeat, stats.longest_repeat_count) == ("a a", 2)


def test_unspaced_text_falls_back_to_characters():
    stats = repetition_stats("ㅋㅋㅋㅋㅋㅋ")
    assert stats.unit == "char"
    assert stats.distinct_1 == pytest.approx(1 / 6)
    assert stats.distinct_2 == pytest.approx(1 / 5)
    assert (stats.longest_repeat, stats.longest_repeat_count) == ("ㅋㅋㅋㅋㅋ", 2)


def test_empty_text():
    stats = repetition_stats("   ")
    assert stats.to_dict() == {
        "unit": "word",
        "n_tokens": 0,
        "distinct_1": 0.0,
        "distinct_2": 0.0,
        "longest_repeat_len": 0,
        "longest_repeat_count": 0,
        "longest_repeat": "",
    }


def test_frozen_and_typed_errors():
    stats = repetition_stats("a b")
    with pytest.raises(AttributeError):
        stats.n_tokens = 3
    with pytest.raises(MetricError):
        repetition_stats(None)
