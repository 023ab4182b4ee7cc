"""The terminal table every eval, rescore and report ends with: model × metric, intervals, deltas."""
from __future__ import annotations

from harness.tables import format_table


def fmt_interval(entry: dict, signed: bool = False) -> str:
    value, low, high = entry.get("value"), entry.get("low"), entry.get("high")
    if value is None:
        return "-"
    sign = "+" if signed else ""
    text = f"{value:{sign}.2f}"
    if low is not None and high is not None and low != high:
        text += f" [{low:{sign}.2f}, {high:{sign}.2f}]"
    return text


def results_table(results: dict) -> str:
    labels = list(results["metric_info"])
    header = ["model"] + labels
    rows = []
    for model, metrics in results["metrics"].items():
        rows.append(tuple([model] + [fmt_interval(metrics[label]) for label in labels]))
        for label_deltas in [results.get("deltas", {}).get(model)]:
            if label_deltas:
                cells = []
                for label in labels:
                    d = label_deltas[label]
                    mark = " ▲" if d.get("improved") else " ▼" if d.get("regressed") else ""
                    cells.append(fmt_interval(d, signed=True) + mark)
                rows.append(tuple(["  Δ vs base"] + cells))
    n = results.get("n_samples")
    title = f"{results.get('suite', '')} — {n} samples, 95% bootstrap intervals; ▲/▼: interval of Δ excludes 0"
    return title + "\n" + format_table(header, rows)
