"""The terminal table every eval, rescore and report ends with: model × metric, intervals, deltas."""

from __future__ import annotations

from harness.runs.tables import format_table


def fmt_interval(entry: dict, signed: bool = False, missing: str = "-") -> str:
    value, low, high = entry.get("value"), entry.get("low"), entry.get("high")
    if value is None:
        return missing
    sign = "+" if signed else ""
    # nan and inf print as such: a broken model's figure must not look like a number, nor stop the table
    text = f"{value:{sign}.2f}"
    if low is not None and high is not None and low != high:
        text += f" [{low:{sign}.2f}, {high:{sign}.2f}]"
    if entry.get("n") is not None:
        text += f" n={entry['n']}"
    return text


def results_table(results: dict) -> str:
    labels = list(results["metric_info"])
    header = ["model"] + labels
    rows = []
    for model, metrics in results["metrics"].items():
        rows.append(tuple([model] + [fmt_interval(metrics.get(label) or {}) for label in labels]))
        for label_deltas in [(results.get("deltas") or {}).get(model)]:
            if label_deltas:
                cells = []
                for label in labels:
                    d = label_deltas.get(label) or {}
                    mark = " ▲" if d.get("improved") else " ▼" if d.get("regressed") else ""
                    cells.append(fmt_interval(d, signed=True) + mark)
                rows.append(tuple(["  Δ vs base"] + cells))
    n = results.get("n_samples")
    title = (
        f"{results.get('suite', '')} — {n} samples{long_prompts_note(results.get('long_prompts'))}, "
        f"{interval_note(results.get('bootstrap'))}"
    )
    notes = version_notes(results["metric_info"])
    text = title + "\n" + format_table(header, rows) + "".join("\n" + note for note in notes)
    by_category = breakdown_table(results)
    text += "\n\n" + by_category if by_category else ""
    repetition = repetition_table(results.get("repetition") or {})
    text += "\n\n" + repetition if repetition else ""
    verify = results.get("verify") or {}
    if verify:
        text += "\n\nchecked against the plain path (4-bit + peft, transformers generate, batch 1):" + "".join(
            f"\n  {column}: {v['summary']}" for column, v in verify.items()
        )
    return text


def breakdown_table(results: dict) -> str:
    """Each category's means per column (Δ vs base beside an adapter's), then micro and macro rows; the
    subjects stay in results.json and the report (dozens of rows are too many for a terminal)."""
    b = results.get("breakdown") or {}
    columns, labels = b.get("columns") or {}, list(results.get("metric_info") or {})
    if not columns:
        return ""
    header = ["by category", "n"] + [f"{column} {label}" for column in columns for label in labels]
    rows = []
    for name, n, entries, deltas in breakdown_rows(results):
        cells = []
        for column in columns:
            for label in labels:
                d = (deltas.get(column) or {}).get(label)
                delta = f" ({_value_text(d, signed=True)}{_mark(d)})" if d else ""
                cells.append(_value_text((entries.get(column) or {}).get(label)) + delta)
        rows.append((name, n, *cells))
    return format_table(header, rows)


def breakdown_rows(results: dict) -> list[tuple[str, int | str, dict, dict]]:
    """(name, n, {column: {label: entry}}, {column: {label: delta}}) for each category, the micro
    average (the headline figures) and the macro averages."""
    b = results["breakdown"]
    columns, deltas = b["columns"], b.get("deltas") or {}
    first = next(iter(columns.values()))

    def macro(key: str) -> tuple[dict, dict]:
        return {c: v.get(key) for c, v in columns.items()}, {c: d.get(key) for c, d in deltas.items()}

    def category(name: str) -> tuple[dict, dict]:
        entries = {c: v["categories"].get(name) for c, v in columns.items()}
        return entries, {c: (d.get("categories") or {}).get(name) for c, d in deltas.items()}

    rows = [(c, (first["categories"].get(c) or {}).get("n", ""), *category(c)) for c in b.get("categories") or []]
    micro = (results.get("metrics") or {}, results.get("deltas") or {})
    rows.append(("micro (all samples)", results.get("n_samples", ""), *micro))
    rows.append((f"macro over {len(b.get('subjects') or [])} subjects", "", *macro("macro_subjects")))
    if b.get("categories"):
        rows.append((f"macro over {len(b['categories'])} categories", "", *macro("macro_categories")))
    return rows


def _value_text(entry: dict | None, signed: bool = False) -> str:
    value = entry.get("value") if isinstance(entry, dict) else entry
    return "-" if value is None else f"{value:{'+' if signed else ''}.2f}"


def _mark(entry: dict) -> str:
    return " ▲" if entry.get("improved") else " ▼" if entry.get("regressed") else ""


def interval_note(bootstrap: dict | None) -> str:
    """What the intervals are and what ▲/▼ means, for the line above a table."""
    bootstrap = bootstrap or {}
    confidence = bootstrap.get("confidence", 0.95)
    alpha = f"{1 - confidence:.2g}"
    text = f"{confidence:.0%} intervals (exact for 0/100 columns, else BCa bootstrap; corpus metrics percentile)"
    comparisons = bootstrap.get("comparisons")
    if comparisons == 0:
        return text
    if bootstrap.get("correction") == "holm":
        return text + f"; ▲/▼: Δ significant at {alpha} after Holm's correction over {comparisons} comparisons"
    if bootstrap.get("correction") == "none":
        return text + f"; ▲/▼: p < {alpha} for that Δ alone, uncorrected for its {comparisons} comparisons"
    return text + "; ▲/▼: interval of Δ excludes 0"


def long_prompts_note(counts: dict | None) -> str:
    """' (3 prompts truncated to fit the context, 1 skipped)', or '' when every prompt fit."""
    if not counts or not (counts.get("truncated") or counts.get("skipped")):
        return ""
    return f" ({counts.get('truncated', 0)} prompts truncated to fit the context, {counts.get('skipped', 0)} skipped)"


def repetition_table(repetition: dict) -> str:
    """Mean degeneration per model: looping outputs show as low distinct-n and long repeats."""
    rows = [
        (
            model + (" (characters)" if r.get("unit") == "char" else ""),
            f"{r['distinct_1']:.3f}",
            f"{r['distinct_2']:.3f}",
            f"{r['longest_repeat_len']:.1f}",
            f"{r['hit_limit_rate']:.0%}",
        )
        for model, r in repetition.items()
        if r
    ]
    if not rows:
        return ""
    return format_table(["degeneration (means)", "distinct-1", "distinct-2", "longest repeat", "hit token limit"], rows)


def version_notes(metric_info: dict) -> list[str]:
    """'rouge1[mecab], rouge2[mecab]: python-mecab-ko 1.3.7; …': what computed each figure, metrics
    sharing a version on one line.  The table and the report print them under the figures."""
    groups: dict[str, list[str]] = {}
    for label, info in metric_info.items():
        version = (info or {}).get("version") or ""
        if version:
            groups.setdefault(version, []).append(label)
    return [f"{', '.join(labels)}: {version}" for version, labels in groups.items()]
