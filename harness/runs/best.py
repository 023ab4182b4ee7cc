"""Which of a run's columns is best by a metric: shared by results.json (the best checkpoint) and the
report (the best sweep point)."""

from __future__ import annotations

import math


def best_index(values: list, higher_is_better: bool) -> int | None:
    """The index of the best finite number in `values` (others are passed over), the earliest on a
    tie; None where there is none."""
    scored = [
        (value, i)
        for i, value in enumerate(values)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ]
    if not scored:
        return None
    pick = max if higher_is_better else min
    return pick(scored, key=lambda s: (s[0], -s[1]) if higher_is_better else s)[1]
