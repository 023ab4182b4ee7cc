"""How `harness generate` shows its answers: each prompt with every model × variant's answer, one under
another or side by side, with its statistics; and a summary table per model × variant."""

from __future__ import annotations

from harness.generate.prompts import PromptItem
from harness.runs.tables import display_width, format_table, pad


def stats_line(record: dict) -> str:
    rep = record["repetition"]
    stop = "hit max_new_tokens" if record["hit_limit"] else record["stop_reason"]
    rate = record.get("tokens_per_s")
    batch = f" (batch of {record['batch_size']})" if record.get("batch_size", 1) > 1 else ""
    repeat = f"{rep['longest_repeat_len']}-gram ×{rep['longest_repeat_count']}" if rep["longest_repeat_len"] else "none"
    return (
        f"{record['generated_tokens']} tokens · {record['time_s']:.2f} s{batch} · "
        f"{rate if rate is not None else '-'} tok/s · stop: {stop} · distinct-1 {rep['distinct_1']:.2f} · "
        f"distinct-2 {rep['distinct_2']:.2f} · longest repeat {repeat}"
    )


def wrap(text: str, width: int) -> list[str]:
    """Lines of at most `width` terminal columns (Hangul counts two), breaking at spaces where possible."""
    out = []
    for paragraph in text.split("\n"):
        line = ""
        for ch in paragraph:
            if display_width(line + ch) > width:
                cut = line.rfind(" ")
                if cut > 0:
                    out.append(line[:cut])
                    line = line[cut + 1 :]
                else:
                    out.append(line)
                    line = ""
            line += ch
        out.append(line)
    return out


def render_prompt(item: PromptItem, records: list[dict], width: int = 100, side_by_side: bool = False) -> str:
    """One prompt and each model × variant's answer: one under another, or in columns."""
    first = item.text.strip().splitlines()[0] if item.text.strip() else ""
    title = f"━━ prompt {item.id}: {first}"
    lines = [title if display_width(title) <= width else wrap(title, width - 1)[0] + "…"]
    if side_by_side and len(records) > 1:
        gap = 3
        col = (width - gap * (len(records) - 1)) // len(records)
        cells = [
            [f"▸ {r['column']}"[:col], "─" * min(col, 40)] + wrap(r["output"], col) + [""] + wrap(stats_line(r), col)
            for r in records
        ]
        height = max(len(c) for c in cells)
        for n in range(height):
            lines.append((" " * gap).join(pad(c[n] if n < len(c) else "", col) for c in cells).rstrip())
        return "\n".join(lines)
    for r in records:
        lines.append(f"▸ {r['column']}")
        lines.extend("  " + line for line in wrap(r["output"], max(20, width - 2)))
        lines.append("  · " + stats_line(r))
    return "\n".join(lines)


def summary_table(records: list[dict], wall: dict[str, float]) -> str:
    """Per model × variant: answers, tokens, throughput and the mean degeneration statistics."""
    columns: dict[str, list[dict]] = {}
    for r in records:
        columns.setdefault(r["column"], []).append(r)
    rows = []
    for column, recs in columns.items():
        tokens = sum(r["generated_tokens"] for r in recs)
        seconds = wall.get(column, 0.0)
        n = len(recs)
        rows.append(
            (
                column,
                n,
                tokens,
                f"{seconds:.2f}",
                f"{tokens / seconds:.1f}" if seconds else "-",
                f"{sum(r['repetition']['distinct_1'] for r in recs) / n:.2f}",
                f"{sum(r['repetition']['distinct_2'] for r in recs) / n:.2f}",
                f"{sum(r['repetition']['longest_repeat_len'] for r in recs) / n:.1f}",
                f"{100 * sum(r['hit_limit'] for r in recs) / n:.0f}%",
            )
        )
    return format_table(
        ["model", "answers", "tokens", "wall s", "tok/s", "distinct-1", "distinct-2", "longest repeat", "hit limit"],
        rows,
    )


def render_answers(
    items: list[PromptItem], records: list[dict], labels: list[str], width: int, side: bool
) -> list[str]:
    """Each prompt rendered with its answers, these in the order of `labels` (model × variant)."""
    by_prompt: dict[str, list[dict]] = {}
    for record in records:
        by_prompt.setdefault(record["prompt_id"], []).append(record)
    order = {label: k for k, label in enumerate(labels)}
    return [
        render_prompt(item, sorted(by_prompt.get(item.id, []), key=lambda r: order[r["column"]]), width, side)
        for item in items
    ]
