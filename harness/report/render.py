"""Render a Report as one self-contained HTML page (inline CSS, JS, SVG).

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
from harness.report.breakdown import breakdown_context
from harness.report.charts import bar_charts, color, histograms, training_curves
from harness.report.load import Report
from harness.report.memory_chart import memory_charts
from harness.report.rows import metrics_rows, repetition_rows, train_summary, verify_rows
from harness.report.samples import primary_metric, sample_data
from harness.report.sweep import sweep_context
from harness.runs.summary import interval_note, long_prompts_note, version_notes

TEMPLATES = Path(__file__).parent / "templates"
SECTIONS = ("overview", "metrics", "training", "samples")

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


def template_env():
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


def _run_context(run) -> dict:
    r, env = run.results, run.environment or {}
    return {
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


def page_context(report: Report) -> dict:
    first = report.first
    data = sample_data(report)
    primary = primary_metric(report)
    curves, memory = training_curves(report), memory_charts(report)
    runs = [_run_context(run) for run in report.runs]
    models = [
        {"m": m, "color": color(i), "train": train_summary(m.info), "tp": m.throughput or {}}
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
        "breakdown": breakdown_context(report),
        "charts": bar_charts(report),
        "sweep": sweep_context(report),
        "repetition": repetition_rows(report),
        "verify": verify_rows(report),
        "curves": curves,
        "memory": memory,
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
        "sections": [s for s in SECTIONS if s != "training" or curves or memory],
        "versions": version_notes(report.metric_info),
        "results_files": sorted({run.results_file for run in report.runs} - {"results.json"}),
    }


def render_html(report: Report) -> str:
    return template_env().get_template("report.html.j2").render(**page_context(report))
