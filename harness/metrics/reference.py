"""docs/metrics.md's table of metrics and their options, rendered from the declarations in catalog.py.

The table sits between two markers in the hand-written page; a test checks it is current.
Rewrite it in place with:

    python -m harness.metrics.reference docs/metrics.md
"""

from __future__ import annotations

import sys
from pathlib import Path

from harness.metrics.catalog import METRICS, Option

COMMAND = "python -m harness.metrics.reference docs/metrics.md"
BEGIN = f"<!-- metric table: generated from harness/metrics/catalog.py by `{COMMAND}` -->"
END = "<!-- end of the metric table -->"


def render_table() -> str:
    """One row per metric, its options in the last column."""
    rows = ["| metric | measures | options (default) |", "| --- | --- | --- |"]
    for spec in METRICS:
        options = "<br>".join(_option(option) for option in spec.options) or "none"
        rows.append(f"| `{spec.name}` | {spec.description} | {options} |")
    return "\n".join(rows) + "\n"


def _option(option: Option) -> str:
    values = f" ({', '.join(f'`{v}`' for v in option.values)})" if option.values else ""
    return f"`{option.name}` (`{option.default}`): {option.description}{values}".replace("|", "\\|")


def with_table(page: str) -> str:
    """`page` with the text between the markers replaced by the current table."""
    head, found, rest = page.partition(BEGIN + "\n")
    _old, found_end, tail = rest.partition(END)
    if not (found and found_end):
        raise ValueError(f"the page lacks the markers {BEGIN!r} … {END!r}")
    return f"{head}{BEGIN}\n\n{render_table()}\n{END}{tail}"


if __name__ == "__main__":
    target = Path(sys.argv[1])
    target.write_text(with_table(target.read_text(encoding="utf-8")), encoding="utf-8")
