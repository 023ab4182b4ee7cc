"""Plain-text tables for the terminal summaries every command ends with."""

from __future__ import annotations

import unicodedata


def format_table(header: list[str], rows: list[tuple]) -> str:
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(display_width(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(pad(c, widths[i]) for i, c in enumerate(row)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def display_width(text: str) -> int:
    """Terminal columns `text` takes: Hangul and other wide characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def pad(text: str, width: int) -> str:
    """`text` filled with spaces to `width` terminal columns (as it is, when wider)."""
    return text + " " * max(0, width - display_width(text))
