import pytest

from harness.metrics import MetricError, korquad_exact_match, korquad_f1, normalize_answer


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        # The official list of symbols replaced by a space.
        ("‘세종’", "세종"),
        ("'세종'", "세종"),
        ('"세종"', "세종"),
        ("《훈민정음》", "훈민정음"),
        ("<훈민정음>", "훈민정음"),
        ("〈훈민정음〉", "훈민정음"),
        ("(1443년)", "1443년"),
        # Replaced by a SPACE, so the token splits.
        ("세종'대왕", "세종 대왕"),
        ("세종(대왕)", "세종 대왕"),
        # Not in the official list and not ASCII punctuation: kept.
        ("“세종”", "“세종”"),
        ("「세종」", "「세종」"),
        ("『세종』", "『세종』"),
        ("【세종】", "【세종】"),
        ("세종·대왕", "세종·대왕"),
        # ASCII punctuation is deleted without a space.
        ("3.14", "314"),
        ("세종, 대왕!", "세종 대왕"),
        ("[세종]", "세종"),
        ("{세종}", "세종"),
        # Lower-casing and whitespace collapsing.
        ("  The   KING \n", "the king"),
        ("", ""),
        ("()", ""),
    ],
)
def test_normalize_answer_matches_official_rules(raw, normalized):
    assert normalize_answer(raw) == normalized


def test_exact_match_ignores_quotes_brackets_and_punctuation():
    assert korquad_exact_match("《훈민정음》.", ["훈민정음"]) == 100.0
    assert korquad_exact_match("‘세종’", ["세종"]) == 100.0
    assert korquad_exact_match("  세종   대왕 ", ["세종 대왕"]) == 100.0


def test_curly_double_quotes_are_not_removed_like_the_official_script():
    assert korquad_exact_match("“세종”", ["세종"]) == 0.0
    # Two of four characters match: P = 2/4, R = 2/2, F1 = 2/3.
    assert korquad_f1("“세종”", ["세종"]) == pytest.approx(200.0 / 3)


def test_spaces_matter_for_em_but_not_for_char_f1():
    assert korquad_exact_match("세종대왕", ["세종 대왕"]) == 0.0
    assert korquad_f1("세종대왕", ["세종 대왕"]) == 100.0


def test_particle_costs_only_precision():
    # pred chars 세종대왕이 (5), gold 세종대왕 (4), overlap 4:
    # P = 4/5, R = 1, F1 = 2 * 0.8 / 1.8 = 8/9.
    assert korquad_exact_match("세종대왕이", ["세종대왕"]) == 0.0
    assert korquad_f1("세종대왕이", ["세종대왕"]) == pytest.approx(800.0 / 9)


def test_char_f1_counts_multiset_overlap():
    # 1443년 vs 1446년: {1, 4, 4, 년} overlap = 4 of 5 each side -> 80.
    assert korquad_f1("1443년", ["1446년"]) == pytest.approx(80.0)
    # Repeated chars count once per occurrence: 가가가 vs 가나: overlap 1,
    # P = 1/3, R = 1/2, F1 = 2 * (1/6) / (5/6) = 0.4.
    assert korquad_f1("가가가", ["가나"]) == pytest.approx(40.0)


def test_multiple_golds_take_the_max_per_metric():
    golds = ["1446년", "1443년 음력 12월"]
    assert korquad_exact_match("1443년", golds) == 0.0
    # vs gold 1: 80 (above).  vs gold 2: pred 5 chars, gold 10 chars
    # (1443년음력12월), overlap 1,4,4,3,년 = 5 -> P 1, R 1/2, F1 = 2/3.
    assert korquad_f1("1443년", golds) == pytest.approx(80.0)
    assert korquad_exact_match("1443년", ["1446년", "1443년"]) == 100.0
    assert korquad_f1("1443년 음력 12월", golds) == 100.0


def test_empty_after_normalisation_keeps_the_official_quirk():
    # Both normalise to "": equal strings (EM 100) but no common chars (F1 0).
    assert korquad_exact_match("", ["()"]) == 100.0
    assert korquad_f1("", ["()"]) == 0.0
    assert korquad_f1("", ["세종"]) == 0.0


def test_case_insensitive_for_latin():
    assert korquad_exact_match("KBS", ["kbs"]) == 100.0


@pytest.mark.parametrize("fn", [korquad_exact_match, korquad_f1])
def test_bad_inputs_raise_metric_error(fn):
    with pytest.raises(MetricError, match="no gold answers"):
        fn("세종", [])
    with pytest.raises(MetricError, match="single str"):
        fn("세종", "세종")
    with pytest.raises(MetricError, match="prediction must be a str"):
        fn(None, ["세종"])
    with pytest.raises(MetricError, match=r"answers\[1\]"):
        fn("세종", ["세종", {"text": "세종"}])
    assert issubclass(MetricError, ValueError)
