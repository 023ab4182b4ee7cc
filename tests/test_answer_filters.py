"""The suite's answer filters against the same steps written with plain str and re, on hostile outputs."""

from __future__ import annotations

import re

import pytest

from harness.config import SuiteConfig, validate
from harness.errors import ConfigError
from harness.tasks import get_task

FILTERS = [
    {"function": "regex", "pattern": r"답\s*[:：]\s*(.*)", "group": 1},
    {"function": "first_line"},
    {"function": "strip"},
    {"function": "lowercase"},
]


def plain(output: str) -> str:
    match = re.search(r"답\s*[:：]\s*(.*)", output)
    text = match.group(1) if match else output
    return text.split("\n", 1)[0].strip().lower()


def suite(filters) -> SuiteConfig:
    return validate(SuiteConfig, {"name": "s", "task": "qa", "filters": filters}, "s.yaml")


@pytest.mark.parametrize(
    "output", ["", "\n", "답: 서울\n설명", "  답：  Seoul  \n", "답 서울", "답:", "\u00a0답: ÉCLAIR\r\n둘째 줄", "🙂"]
)
def test_filters_match_plain_python(output):
    assert get_task("qa").answer(suite(FILTERS).filters, output) == plain(output)


def test_without_filters_the_task_extracts_as_before():
    assert get_task("qa").answer([], "  서울 \n부산") == "서울"
    assert get_task("summarization").answer([], "  요약 \n둘째 ") == "요약 \n둘째"


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ([{"function": "regex"}], "regex needs a 'pattern'"),
        ([{"function": "strip", "pattern": "x"}], "'strip' takes no pattern"),
        ([{"function": "regex", "pattern": "(a", "group": 0}], "not a valid regular expression"),
    ],
)
def test_bad_filters_are_one_line(filters, expected):
    with pytest.raises(ConfigError) as info:
        suite(filters)
    assert expected in str(info.value) and "filters" in str(info.value) and "\n" not in str(info.value)
