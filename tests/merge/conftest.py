"""The merge tests compute on one torch thread (see tests/support.py)."""

from __future__ import annotations

import pytest
from support import one_torch_thread


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with one_torch_thread():
        yield
