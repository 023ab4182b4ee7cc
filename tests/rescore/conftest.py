"""Fixtures of the rescore tests: a summarization run directory (`rescore_helpers`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from rescore_helpers import write_summarization_run


@pytest.fixture
def sum_run(tmp_path) -> Path:
    return write_summarization_run(tmp_path / "runs")
