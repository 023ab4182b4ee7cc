"""A training sweep in the report: each metric against the swept field (one line per value of the
other fields in a grid), its intervals as error bars, the best point marked and the base as a
reference line; and the same numbers as a table. Read from results.json's `sweep` (harness eval
--sweep); point names and values are the user's text and reach the page only through autoescaping."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from harness.report.charts import as_mapping, color, finite
from harness.report.load import Model, Report
from harness.runs.best import best_index


@dataclass
class SweepView:
    fields: list[str]
    values: dict[str, list]  # field → its values, in plotting order
    points: list[tuple[Model, dict]]  # each swept model with its point's values
    base: Model | None
    title: str = "Sweep"  # or "Checkpoints": a training run's checkpoints against their step


def sweep_view(report: Report) -> SweepView | None:
    """The first run's sweep that has evaluated points; None when no run comes from a sweep. Columns of
    a generation grid are left out: a point would have several."""
    for run in report.runs:
        fields, values, title = _swept(run.results)
        if not fields or not all(isinstance(v, list) for v in fields.values()):
            continue
        own = [m for m in report.models if m.run_id == run.run_id and not m.info.get("variant")]
        points = [
            (m, values[m.run_name])
            for m in own
            if isinstance(values.get(m.run_name), dict) and set(values[m.run_name]) == set(fields)
        ]
        if points:
            base = next((m for m in own if m.kind == "base"), None)
            return SweepView(list(fields), {f: _ordered(v) for f, v in fields.items()}, points, base, title)
    return None


def _swept(results: dict) -> tuple[dict, dict, str]:
    """(fields and their values, each model's values, the section's title) of a sweep, or of a run's
    checkpoints (harness eval --checkpoints) as a sweep over one field, the step."""
    sweep = as_mapping(results.get("sweep"))
    if sweep:
        return as_mapping(sweep.get("fields")), as_mapping(sweep.get("points")), "Sweep"
    steps = as_mapping(as_mapping(results.get("checkpoints")).get("steps"))
    steps = {name: step for name, step in steps.items() if isinstance(step, int) and not isinstance(step, bool)}
    if not steps:
        return {}, {}, ""
    return {"step": sorted(set(steps.values()))}, {n: {"step": s} for n, s in steps.items()}, "Checkpoints"


def _ordered(values: list) -> list:
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    return sorted(values) if numbers else list(values)


def value_text(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ",".join(map(value_text, value))
    return str(value)


def field_label(field: str, fields: list[str]) -> str:
    short = field.rsplit(".", 1)[-1]
    return short if [f.rsplit(".", 1)[-1] for f in fields].count(short) == 1 else field


def best_point(view: SweepView, label: str, higher: bool) -> Model | None:
    # ties: the first point in the sweep's order
    i = best_index([(m.metrics.get(label) or {}).get("value") for m, _ in view.points], higher)
    return None if i is None else view.points[i][0]


def sweep_table(report: Report, view: SweepView | None = None) -> dict | None:
    """Rows of metric per point (the base first), with the best point of each metric marked."""
    view = view or sweep_view(report)
    if view is None:
        return None
    labels = list(report.metric_info)
    best = {l: best_point(view, l, bool(report.metric_info[l].get("higher_is_better", True))) for l in labels}
    rows = []
    if view.base is not None:
        rows.append({"name": view.base.name, "at": ["base"] * len(view.fields), "cells": _cells(view.base, labels)})
    for m, values in sorted(view.points, key=lambda p: _sort_key(view, p[1])):
        cells = _cells(m, labels)
        for cell, l in zip(cells, labels):
            cell["best"] = best[l] is m
        rows.append({"name": m.name, "at": [value_text(values[f]) for f in view.fields], "cells": cells})
    fields = [field_label(f, view.fields) for f in view.fields]
    return {"fields": fields, "labels": labels, "rows": rows, "title": view.title}


def _cells(m: Model, labels: list[str]) -> list[dict]:
    return [{**(m.metrics.get(l) or {}), "best": False} for l in labels]


def _sort_key(view: SweepView, values: dict) -> tuple:
    return tuple(_index(view.values[f], values.get(f)) for f in reversed(view.fields[1:])) + (
        _index(view.values[view.fields[0]], values.get(view.fields[0])),
    )


def _index(values: list, value) -> int:
    return values.index(value) if value in values else len(values)


def sweep_charts(report: Report, view: SweepView | None = None) -> list[dict]:
    """One chart per metric: x the first swept field's values, y the metric with its interval."""
    view = view or sweep_view(report)
    if view is None:
        return []
    return [
        _chart(view, label, bool(info.get("higher_is_better", True)))
        for label, info in report.metric_info.items()
        if isinstance(info, dict)
    ]


def _chart(view: SweepView, label: str, higher: bool) -> dict:
    xs = view.values[view.fields[0]]
    width, height, left, right, top, bottom = max(320, 90 + 64 * len(xs)), 230, 52, 14, 14, 40
    base = (view.base.metrics.get(label) or {}) if view.base else {}
    known = [
        v
        for e in [base] + [m.metrics.get(label) or {} for m, _ in view.points]
        for v in (e.get("value"), e.get("low"), e.get("high"))
        if finite(v)
    ]
    lo, hi = (min(known), max(known)) if known else (0.0, 1.0)
    pad = (hi - lo) * 0.08 or max(abs(hi) * 0.1, 0.5)
    # values that are all zero or above keep the axis there: the padding does not invent negative scores
    lo, hi = (max(lo - pad, 0.0) if lo >= 0 else lo - pad), hi + pad

    def px(i: int) -> float:
        return round(left + (width - left - right) * (i + 0.5) / len(xs), 1)

    def py(v: float) -> float:
        return round(top + (height - top - bottom) * (1 - (v - lo) / (hi - lo)), 1)

    best = best_point(view, label, higher)
    chart = {
        "label": label,
        "higher": higher,
        "width": width,
        "height": height,
        "left": left,
        "right": width - right,
        "bottom": height - bottom,
        "x_field": field_label(view.fields[0], view.fields),
        "xticks": [{"x": px(i), "label": value_text(v)} for i, v in enumerate(xs)],
        "yticks": [{"y": py(lo + (hi - lo) * k / 4), "label": _tick(lo + (hi - lo) * k / 4)} for k in range(5)],
        "series": _series(view, label, best, xs, px, py),
        "best": None,
        "base": None,
    }
    if best is not None:
        chart["best"] = {"name": best.name, "value": best.metrics[label]["value"]}
    if finite(base.get("value")):
        chart["base"] = {"y": py(base["value"]), "value": base["value"]}
        if finite(base.get("low")) and finite(base.get("high")):
            chart["base"].update(ylow=py(base["low"]), yhigh=py(base["high"]))
    return chart


def _tick(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _series(view: SweepView, label: str, best, xs: list, px, py) -> list[dict]:
    """One line per combination of the other fields' values (one line without a grid)."""
    others = view.fields[1:]
    series = []
    combos = list(itertools.product(*(view.values[f] for f in others)))
    for n, combo in enumerate(combos):
        dodge = (n - (len(combos) - 1) / 2) * 6  # lines side by side, so their whiskers do not overlap
        wanted = dict(zip(others, combo))
        dots = []
        for m, values in view.points:
            entry = m.metrics.get(label) or {}
            if any(values.get(f) != v for f, v in wanted.items()) or values.get(view.fields[0]) not in xs:
                continue
            if not finite(entry.get("value")):
                continue
            dot = {"x": round(px(xs.index(values[view.fields[0]])) + dodge, 1), "y": py(entry["value"]), "name": m.name}
            dot.update(value=entry["value"], best=m is best)
            if finite(entry.get("low")) and finite(entry.get("high")) and entry["low"] != entry["high"]:
                dot.update(ylow=py(entry["low"]), yhigh=py(entry["high"]))
            dots.append(dot)
        if dots:
            dots.sort(key=lambda d: d["x"])
            name = ", ".join(f"{field_label(f, view.fields)}={value_text(v)}" for f, v in wanted.items())
            line = " ".join(f"{d['x']},{d['y']}" for d in dots)
            series.append({"name": name, "color": color(n), "points": line, "dots": dots})
    return series


def sweep_context(report: Report) -> dict:
    """What templates/sweep.html.j2 draws: empty without a sweep."""
    view = sweep_view(report)
    if view is None:
        return {}
    return {"charts": sweep_charts(report, view), "table": sweep_table(report, view), "title": view.title}
