"""What the page's tables hold per model: metrics with intervals and deltas, `--verify` results,
repetition statistics, and the summary of how an adapter was trained."""

from __future__ import annotations

from harness.report.charts import as_mapping, color, delta_state
from harness.report.load import Report


def metrics_rows(report: Report) -> list[dict]:
    rows = []
    for i, m in enumerate(report.models):
        cells = []
        for label in report.metric_info:
            entry = m.metrics.get(label) or {}
            d = (m.delta or {}).get(label)
            cells.append(
                {
                    "value": entry.get("value"),
                    "low": entry.get("low"),
                    "high": entry.get("high"),
                    "n": entry.get("n"),
                    "delta": d,
                    "state": delta_state(d),
                }
            )
        rows.append({"model": m, "color": color(i), "cells": cells})
    return rows


def verify_rows(report: Report) -> list[dict]:
    """Each model's `--verify` result (its answers re-run on the plain path), where its run has one."""
    runs = {run.run_id: run for run in report.runs}
    rows = []
    for i, m in enumerate(report.models):
        found = (runs[m.run_id].results.get("verify") or {}).get(m.run_name) if m.run_id in runs else None
        if found:
            rows.append({"model": m.name, "color": color(i), "summary": found.get("summary", "")})
    return rows


def repetition_rows(report: Report) -> list[dict]:
    """Mean degeneration statistics per model (distinct-1/2, longest repeat, share that hit the token
    limit), from the records; empty when no record carries repetition statistics."""
    from harness.metrics.aggregate import repetition_summary  # numpy: only when a report has such records

    rows = []
    for i, m in enumerate(report.models):
        summary = repetition_summary(m.records)
        if summary:
            rows.append({"model": m.name, "color": color(i), **summary})
    return rows


def train_summary(info: dict) -> dict | None:
    record = as_mapping(info.get("train_record"))
    if not record:
        return None
    history = (
        [h for h in record.get("history") or [] if isinstance(h, dict)]
        if isinstance(record.get("history"), list)
        else []
    )
    losses = [h["loss"] for h in history if isinstance(h.get("loss"), (int, float))]
    evals = [h["eval_loss"] for h in history if isinstance(h.get("eval_loss"), (int, float))]
    config = as_mapping(record.get("config"))
    lora, training, data = (
        as_mapping(config.get("lora")),
        as_mapping(config.get("training")),
        as_mapping(record.get("data")),
    )
    return {
        "name": record.get("name"),
        "base_model": record.get("base_model"),
        "data": data.get("path"),
        "examples": data.get("examples"),
        "template": data.get("template"),
        "steps": record.get("global_steps"),
        "runtime": record.get("train_runtime_s"),
        "final_loss": losses[-1] if losses else None,
        "best_eval_loss": min(evals) if evals else None,
        "lora": f"r={lora.get('r')}, alpha={lora.get('alpha')}" if lora else None,
        "lr": training.get("learning_rate"),
        "epochs": training.get("epochs"),
    }
