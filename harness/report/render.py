"""Render a Report as one self-contained HTML page (inline CSS, JS, SVG) or as Markdown.

Untrusted text (model outputs, dataset text, names) reaches the page only through jinja2's
autoescaping or through `script_json`, which escapes `<`, `>`, `&`, U+2028 and U+2029 so the
sample data cannot close its <script type="application/json"> block. The page's script puts
that text into the DOM only with textContent / createTextNode.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from markupsafe import Markup

from harness import __version__
from harness.report.load import Report
from harness.runs.summary import interval_note, long_prompts_note, version_notes

TEMPLATES = Path(__file__).parent / "templates"
SECTIONS = ("overview", "metrics", "training", "samples")
_PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f")

_SCRIPT_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def script_json(data) -> Markup:
    """JSON for a <script type="application/json"> block: nothing in it can end the block. A non-finite
    number (JSON has none) travels as the text "nan", "inf" or "-inf", which the page shows as such."""
    text = json.dumps(_finite_or_text(data), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a dataset's JSON escape: keep it escaped
        text = json.dumps(_finite_or_text(data), ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    for char, escaped in _SCRIPT_ESCAPES.items():
        text = text.replace(char, escaped)
    return Markup(text)


def _finite_or_text(value):
    if isinstance(value, float) and not math.isfinite(value):
        return non_finite_text(value)
    if isinstance(value, dict):
        return {k: _finite_or_text(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_text(v) for v in value]
    return value


def non_finite_text(value: float) -> str:
    return "nan" if math.isnan(value) else "inf" if value > 0 else "-inf"


def _env():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["script_json"] = script_json
    env.filters["num"] = _num
    return env


def _num(value, digits: int = 2, signed: bool = False) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "–"
    if not math.isfinite(value):
        return non_finite_text(value)
    return f"{value:{'+' if signed else ''}.{digits}f}"


def _color(i: int) -> str:
    return _PALETTE[i % len(_PALETTE)]


# ----------------------------------------------------------------- page context


def primary_metric(report: Report) -> str | None:
    """The per-sample metric the sample view sorts by: the one with the most distinct values."""
    labels = [label for label, info in report.metric_info.items() if info.get("kind") == "per_sample"]
    if not labels:
        return None
    records = report.models[0].records

    def spread(label):
        return len({(r.get("metrics") or {}).get(label) for r in records})

    return max(labels, key=lambda label: (spread(label), -labels.index(label)))


def is_generative(report: Report) -> bool:
    return any("output" in r or "prediction" in r for m in report.models for r in m.records[:5])


def sample_data(report: Report) -> dict:
    """Everything the sample view needs, once: prompts split into paragraphs interned in a
    string table (KorQuAD repeats each context for several questions), then per model the
    prediction and per-sample metrics in sample order."""
    generative = is_generative(report)
    per_sample = [l for l, i in report.metric_info.items() if i.get("kind") == "per_sample"]
    by_model = [{str(r.get("id")): r for r in m.records} for m in report.models]
    strings: list[str] = []
    index: dict[str, int] = {}

    def intern(text: str) -> int:
        if text not in index:
            index[text] = len(strings)
            strings.append(text)
        return index[text]

    samples = []
    for sid in report.sample_ids:
        first = next(recs[sid] for recs in by_model if sid in recs)
        prompt = str(first.get("prompt", ""))
        sample = {
            "id": sid,
            "p": [intern(part) for part in prompt.split("\n\n")],
            "r": [str(x) for x in first.get("references") or []],
        }
        if generative:
            sample["o"] = [_text(recs.get(sid), "prediction") for recs in by_model]
            sample["s"] = [[_score(recs.get(sid), l) for l in per_sample] for recs in by_model]
        else:
            sample["nll"] = [_field(recs.get(sid), "nll") for recs in by_model]
            sample["tok"] = [_field(recs.get(sid), "tokens") for recs in by_model]
            sample["bytes"] = _field(first, "bytes")
        samples.append(sample)
    base = report.base
    return {
        "kind": "generative" if generative else "perplexity",
        "models": [{"name": m.name, "kind": m.kind, "color": _color(i)} for i, m in enumerate(report.models)],
        "base": report.models.index(base) if base else None,
        "metrics": per_sample,
        "higher": [bool(report.metric_info[l].get("higher_is_better", True)) for l in per_sample],
        "primary": per_sample.index(primary_metric(report)) if per_sample else None,
        "strings": strings,
        "samples": samples,
    }


def _text(record, key):
    if record is None:
        return None
    value = record.get(key, record.get("output"))
    return None if value is None else str(value)


def _score(record, label):
    if record is None:
        return None
    value = (record.get("metrics") or {}).get(label)
    return round(float(value), 4) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _field(record, key):
    if record is None or record.get(key) is None:
        return None
    return record[key]


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
                    "state": _state(d),
                }
            )
        rows.append({"model": m, "color": _color(i), "cells": cells})
    return rows


def verify_rows(report: Report) -> list[dict]:
    """Each model's `--verify` result (its answers re-run on the plain path), where its run has one."""
    runs = {run.run_id: run for run in report.runs}
    rows = []
    for i, m in enumerate(report.models):
        found = (runs[m.run_id].results.get("verify") or {}).get(m.run_name) if m.run_id in runs else None
        if found:
            rows.append({"model": m.name, "color": _color(i), "summary": found.get("summary", "")})
    return rows


def repetition_rows(report: Report) -> list[dict]:
    """Mean degeneration statistics per model (distinct-1/2, longest repeat, share that hit the token
    limit), from the records; empty when no record carries repetition statistics."""
    from harness.metrics.aggregate import repetition_summary

    rows = []
    for i, m in enumerate(report.models):
        summary = repetition_summary(m.records)
        if summary:
            rows.append({"model": m.name, "color": _color(i), **summary})
    return rows


def _state(delta: dict | None) -> str:
    if not delta:
        return ""
    return "improved" if delta.get("improved") else "regressed" if delta.get("regressed") else "same"


def bar_charts(report: Report) -> list[dict]:
    """One small chart per metric (metrics have different scales): bars with interval whiskers."""
    charts = []
    n = len(report.models)
    width, height, left, top, bottom = max(220, 60 + 56 * n), 190, 48, 14, 34
    plot_h = height - top - bottom
    for label, info in report.metric_info.items():
        values = []
        for m in report.models:
            e = m.metrics.get(label) or {}
            values.append((e.get("value"), e.get("low"), e.get("high")))
        finite = [x for v in values for x in v if isinstance(x, (int, float)) and math.isfinite(x)]
        top_value = _nice_max(max(finite) if finite else 1.0)

        def y(v):
            return top + plot_h * (1 - (v / top_value if top_value else 0))  # noqa: B023

        bars = []
        slot = (width - left - 10) / n
        for i, ((value, low, high), m) in enumerate(zip(values, report.models)):
            x = left + slot * i + slot * 0.2
            w = slot * 0.6
            ok = isinstance(value, (int, float)) and math.isfinite(value)
            bar = {
                "x": round(x, 1),
                "w": round(w, 1),
                "color": _color(i),
                "name": m.name,
                "value": value if ok else None,
                "state": _state((m.delta or {}).get(label)),
            }
            if ok:
                bar.update(y=round(y(max(value, 0)), 1), h=round(max(0.0, y(0) - y(max(value, 0))), 1))
                if low is not None and high is not None and low != high:
                    bar.update(cx=round(x + w / 2, 1), ylow=round(y(max(low, 0)), 1), yhigh=round(y(max(high, 0)), 1))
            bars.append(bar)
        ticks = [{"y": round(y(top_value * k / 4), 1), "label": _tick(top_value * k / 4)} for k in range(5)]
        charts.append(
            {
                "label": label,
                "higher": info.get("higher_is_better", True),
                "width": width,
                "height": height,
                "left": left,
                "base_y": round(y(0), 1),
                "bars": bars,
                "ticks": ticks,
                "label_y": height - 8,
            }
        )
    return charts


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * exp:
            return step * exp
    return 10 * exp


def _tick(value: float) -> str:
    return f"{value:.0f}" if value >= 10 or value == 0 else f"{value:.2g}"


def training_curves(report: Report) -> list[dict]:
    charts = []
    width, height, left, right, top, bottom = 460, 220, 50, 12, 12, 30
    for m in report.models:
        record = _mapping((m.info or {}).get("train_record"))
        history = record.get("history") if isinstance(record.get("history"), list) else []
        series = {}
        for key in ("loss", "eval_loss"):
            pts = [
                (h["step"], h[key])
                for h in history
                if isinstance(h, dict) and _finite(h.get(key)) and _finite(h.get("step"))
            ]
            if pts:
                series[key] = pts
        if not series:
            continue
        xs = [p[0] for s in series.values() for p in s]
        ys = [p[1] for s in series.values() for p in s]
        x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
        y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1
        pad = (y1 - y0) * 0.05
        y0, y1 = y0 - pad, y1 + pad

        def px(x):
            return left + (width - left - right) * (x - x0) / (x1 - x0)  # noqa: B023

        def py(v):
            return top + (height - top - bottom) * (1 - (v - y0) / (y1 - y0))  # noqa: B023

        lines = []
        for key, pts in series.items():
            lines.append(
                {
                    "key": key,
                    "color": "#4e79a7" if key == "loss" else "#e15759",
                    "points": " ".join(f"{px(x):.1f},{py(v):.1f}" for x, v in pts),
                    "dots": [{"x": round(px(x), 1), "y": round(py(v), 1), "step": x, "v": round(v, 4)} for x, v in pts]
                    if len(pts) <= 60
                    else [],
                    "last": round(pts[-1][1], 4),
                    "min": round(min(v for _, v in pts), 4),
                }
            )
        yt = [{"y": round(py(y0 + (y1 - y0) * k / 4), 1), "label": f"{y0 + (y1 - y0) * k / 4:.3g}"} for k in range(5)]
        xt = [{"x": round(px(x0 + (x1 - x0) * k / 4), 1), "label": f"{x0 + (x1 - x0) * k / 4:.0f}"} for k in range(5)]
        charts.append(
            {
                "model": m.name,
                "width": width,
                "height": height,
                "left": left,
                "bottom": height - bottom,
                "right": width - right,
                "lines": lines,
                "yticks": yt,
                "xticks": xt,
            }
        )
    return charts


def histograms(report: Report, label: str | None, bins: int = 10) -> list[dict]:
    if label is None:
        return []
    # A non-finite value has no bin: the sample view shows it as such.
    per_model = [[v for r in m.records if _finite(v := (r.get("metrics") or {}).get(label))] for m in report.models]
    values = [v for vs in per_model for v in vs]
    if not values:
        return []
    lo, hi = min(values), max(values)
    if hi <= lo:
        hi = lo + 1
    width, height, left, top, bottom = 260, 130, 30, 8, 26
    charts = []
    for i, (m, vs) in enumerate(zip(report.models, per_model)):
        counts = [0] * bins
        for v in vs:
            if isinstance(v, (int, float)):
                counts[min(bins - 1, int((v - lo) / (hi - lo) * bins))] += 1
        peak = max(counts) or 1
        slot = (width - left - 6) / bins
        rects = [
            {
                "x": round(left + slot * k + 1, 1),
                "w": round(slot - 2, 1),
                "h": round((height - top - bottom) * c / peak, 1),
                "y": round(height - bottom - (height - top - bottom) * c / peak, 1),
                "count": c,
                "range": f"{lo + (hi - lo) * k / bins:.3g}–{lo + (hi - lo) * (k + 1) / bins:.3g}",
            }
            for k, c in enumerate(counts)
        ]
        charts.append(
            {
                "model": m.name,
                "color": _color(i),
                "width": width,
                "height": height,
                "rects": rects,
                "lo": f"{lo:.3g}",
                "hi": f"{hi:.3g}",
                "peak": peak,
                "left": left,
                "axis_y": height - bottom,
                "n": sum(counts),
            }
        )
    return charts


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _mapping(value) -> dict:
    return value if isinstance(value, dict) else {}


def train_summary(info: dict) -> dict | None:
    record = _mapping(info.get("train_record"))
    if not record:
        return None
    history = (
        [h for h in record.get("history") or [] if isinstance(h, dict)]
        if isinstance(record.get("history"), list)
        else []
    )
    losses = [h["loss"] for h in history if isinstance(h.get("loss"), (int, float))]
    evals = [h["eval_loss"] for h in history if isinstance(h.get("eval_loss"), (int, float))]
    config = _mapping(record.get("config"))
    lora, training, data = (
        _mapping(config.get("lora")),
        _mapping(config.get("training")),
        _mapping(record.get("data")),
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


def page_context(report: Report) -> dict:
    first = report.first
    data = sample_data(report)
    primary = primary_metric(report)
    runs = []
    for run in report.runs:
        r = run.results
        env = run.environment or {}
        runs.append(
            {
                "id": run.run_id,
                "path": str(run.path),
                "finished_at": r.get("finished_at"),
                "harness_version": r.get("harness_version"),
                "source": (run.config or {}).get("source"),
                "device": env.get("device"),
                "device_name": env.get("device_name"),
                "python": env.get("python"),
                "versions": env.get("versions") or {},
                "generation": r.get("generation") or {},
                "prompt": r.get("prompt") or {},
                "bootstrap": r.get("bootstrap") or {},
            }
        )
    models = [
        {"m": m, "color": _color(i), "train": train_summary(m.info), "tp": m.throughput or {}}
        for i, m in enumerate(report.models)
    ]
    conf = (first.get("bootstrap") or {}).get("confidence", 0.95)
    return {
        "title": f"{report.suite} — harness report",
        "report": report,
        "suite": report.suite,
        "task": report.task,
        "dataset": first.get("dataset") or {},
        "runs": runs,
        "models": models,
        "labels": list(report.metric_info),
        "metric_info": report.metric_info,
        "rows": metrics_rows(report),
        "charts": bar_charts(report),
        "repetition": repetition_rows(report),
        "verify": verify_rows(report),
        "curves": training_curves(report),
        "histograms": histograms(report, primary),
        "primary": primary,
        "confidence": int(round(conf * 100)),  # noqa: RUF046
        "n_samples": report.n_samples,
        "kind": data["kind"],
        "interval_note": interval_note(first.get("bootstrap")),
        "long_prompts_note": long_prompts_note(first.get("long_prompts")),
        "data": data,
        "generated_at": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "version": __version__,
        "sections": [s for s in SECTIONS if s != "training" or training_curves(report)],
        "versions": version_notes(report.metric_info),
        "results_files": sorted({run.results_file for run in report.runs} - {"results.json"}),
    }


def render_html(report: Report) -> str:
    return _env().get_template("report.html.j2").render(**page_context(report))
