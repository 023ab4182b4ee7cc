import pytest

from harness.metrics import MetricError, normalize_answer_en, squad_exact_match, squad_f1


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("The Cat!", "cat"),
        ("an apple a day", "apple day"),
        ("theatre", "theatre"),  # articles only as whole words
        ("Dr. Smith's  dog", "dr smiths dog"),
        ("A", ""),
    ],
)
def test_normalize_answer_en(raw, normalized):
    assert normalize_answer_en(raw) == normalized


def test_exact_match():
    assert squad_exact_match("The Cat!", ["cat"]) == 100.0
    assert squad_exact_match("cats", ["cat"]) == 0.0
    assert squad_exact_match("cats", ["dog", "the cats."]) == 100.0


def test_word_f1_by_hand():
    # [big, dog] vs [big, red, dog]: P = 1, R = 2/3, F1 = 0.8.
    assert squad_f1("a big dog", ["the big red dog"]) == pytest.approx(80.0)
    # max over golds
    assert squad_f1("a big dog", ["cat", "the big red dog", "big"]) == pytest.approx(80.0)
    assert squad_f1("cat", ["dog"]) == 0.0


def test_empty_quirk_of_v11():
    assert squad_exact_match("the", ["a"]) == 100.0
    assert squad_f1("the", ["a"]) == 0.0


def test_errors():
    with pytest.raises(MetricError):
        squad_f1("x", [])
