"""Each metric's options are declared once (harness/metrics/catalog.py): the registry refuses what is not
declared, and docs/metrics.md's table is rendered from the declarations."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.metrics import MetricError, available_metrics, build_metric
from harness.metrics.catalog import BY_NAME
from harness.metrics.reference import COMMAND, with_table

PAGE = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def test_every_metric_is_declared():
    assert available_metrics() == list(BY_NAME)


@pytest.mark.parametrize("name", list(BY_NAME))
def test_an_undeclared_option_is_refused_naming_the_declared_ones(name):
    declared = BY_NAME[name].option_names
    hint = f"allowed: {', '.join(declared)}" if declared else "it takes no options"
    with pytest.raises(MetricError, match=f"unknown option\\(s\\) no_such_option; {hint}"):
        build_metric(name, {"no_such_option": 1}, [["참고 문장"]])


def test_the_metric_table_is_current():
    page = PAGE.read_text(encoding="utf-8")
    assert page == with_table(page), f"docs/metrics.md's metric table is stale: run `{COMMAND}`"
