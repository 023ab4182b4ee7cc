"""The report's subject and category tables, from each run's results.json "breakdown": per category
(then the micro and macro averages) each model's figures with intervals and its Δ vs the base of its
run; per subject each model's figures."""

from __future__ import annotations

from harness.report.charts import color, delta_state
from harness.report.load import Report
from harness.runs.summary import breakdown_rows


def breakdown_context(report: Report) -> dict | None:
    """{"labels", "models", "groups", "subjects"} for the page and the Markdown; None when no run
    of the report has a breakdown."""
    runs = {run.run_id: run.results for run in report.runs if (run.results.get("breakdown") or {}).get("columns")}
    if not runs:
        return None
    labels = list(report.metric_info)
    models = [(i, m) for i, m in enumerate(report.models) if m.run_id in runs]
    return {
        "labels": labels,
        "models": [{"name": m.name, "color": color(i), "delta": bool(m.delta)} for i, m in models],
        "groups": _group_rows(report, runs, [m for _, m in models], labels),
        "subjects": _subject_rows(runs, [m for _, m in models], labels),
    }


def _group_rows(report: Report, runs: dict[str, dict], models: list, labels: list[str]) -> list[dict]:
    """Each category, then the micro and macro averages, in the order of the first run's table."""
    by_run = {run_id: {row[0]: row for row in breakdown_rows(results)} for run_id, results in runs.items()}
    names = list(next(iter(by_run.values())))
    for rows in by_run.values():
        names += [name for name in rows if name not in names]
    out = []
    for name in names:
        cells = []
        for m in models:
            row = by_run[m.run_id].get(name)
            entries = (row[2].get(m.run_name) or {}) if row else {}
            deltas = (row[3].get(m.run_name) or {}) if row else {}
            for label in labels:
                entry, delta = entries.get(label) or {}, deltas.get(label)
                cells.append({**_figures(entry), "delta": delta, "state": delta_state(delta)})
        first = next((rows[name] for rows in by_run.values() if name in rows), None)
        category = name in (next(iter(runs.values()))["breakdown"].get("categories") or [])
        out.append({"name": name, "n": first[1] if first else "", "average": not category, "cells": cells})
    return out


def _subject_rows(runs: dict[str, dict], models: list, labels: list[str]) -> list[dict]:
    subjects: list[str] = []
    for results in runs.values():
        subjects += [s for s in results["breakdown"].get("subjects") or [] if s not in subjects]
    rows = []
    for subject in subjects:
        category, n, cells = None, None, []
        for m in models:
            b = runs[m.run_id]["breakdown"]
            entry = ((b["columns"].get(m.run_name) or {}).get("subjects") or {}).get(subject) or {}
            category = category or (b.get("category_of") or {}).get(subject)
            n = n if n is not None else entry.get("n")
            cells += [entry.get(label) for label in labels]
        rows.append({"name": subject, "category": category, "n": n, "cells": cells})
    return rows


def _figures(entry: dict) -> dict:
    return {key: entry.get(key) for key in ("value", "low", "high", "n")}
