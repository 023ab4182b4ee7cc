"""The report's SVG charts as numbers for the page's template: bars with intervals per metric, each
trained model's loss curves, and a histogram of the primary metric per model. Also the colour each
model keeps across the page's charts and tables."""

from __future__ import annotations

import math

from harness.report.load import Report

_PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f")


def color(i: int) -> str:
    return _PALETTE[i % len(_PALETTE)]


def delta_state(delta: dict | None) -> str:
    if not delta:
        return ""
    return "improved" if delta.get("improved") else "regressed" if delta.get("regressed") else "same"


def finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def as_mapping(value) -> dict:
    return value if isinstance(value, dict) else {}


def bar_charts(report: Report) -> list[dict]:
    """One small chart per metric (metrics have different scales): bars with interval whiskers."""
    return [_bar_chart(report.models, label, info) for label, info in report.metric_info.items()]


def _bar_chart(models: list, label: str, info: dict) -> dict:
    n = len(models)
    width, height, left, top, bottom = max(220, 60 + 56 * n), 190, 48, 14, 34
    plot_h = height - top - bottom
    values = []
    for m in models:
        e = m.metrics.get(label) or {}
        values.append((e.get("value"), e.get("low"), e.get("high")))
    known = [x for v in values for x in v if isinstance(x, (int, float)) and math.isfinite(x)]
    top_value = _nice_max(max(known) if known else 1.0)

    def y(v):
        return top + plot_h * (1 - (v / top_value if top_value else 0))

    bars = []
    slot = (width - left - 10) / n
    for i, ((value, low, high), m) in enumerate(zip(values, models)):
        x = left + slot * i + slot * 0.2
        w = slot * 0.6
        ok = isinstance(value, (int, float)) and math.isfinite(value)
        bar = {
            "x": round(x, 1),
            "w": round(w, 1),
            "color": color(i),
            "name": m.name,
            "value": value if ok else None,
            "state": delta_state((m.delta or {}).get(label)),
        }
        if ok:
            bar.update(y=round(y(max(value, 0)), 1), h=round(max(0.0, y(0) - y(max(value, 0))), 1))
            if low is not None and high is not None and low != high:
                bar.update(cx=round(x + w / 2, 1), ylow=round(y(max(low, 0)), 1), yhigh=round(y(max(high, 0)), 1))
        bars.append(bar)
    ticks = [{"y": round(y(top_value * k / 4), 1), "label": _tick(top_value * k / 4)} for k in range(5)]
    return {
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
    """One chart per trained model: its training loss and, where evaluated, its validation loss by step."""
    charts = []
    for m in report.models:
        series = history_series(as_mapping((m.info or {}).get("train_record")))
        if series:
            charts.append(curve_chart(m.name, series))
    return charts


def history_series(record: dict, keys: tuple[str, ...] = ("loss", "eval_loss")) -> dict[str, list[tuple]]:
    """(step, value) points of `keys` from a train record's history, finite ones only."""
    history = record.get("history") if isinstance(record.get("history"), list) else []
    series = {}
    for key in keys:
        pts = [
            (h["step"], h[key]) for h in history if isinstance(h, dict) and finite(h.get(key)) and finite(h.get("step"))
        ]
        if pts:
            series[key] = pts
    return series


def curve_chart(name: str, series: dict[str, list[tuple]]) -> dict:
    width, height, left, right, top, bottom = 460, 220, 50, 12, 12, 30
    xs = [p[0] for s in series.values() for p in s]
    ys = [p[1] for s in series.values() for p in s]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1
    pad = (y1 - y0) * 0.05
    y0, y1 = y0 - pad, y1 + pad

    def px(x):
        return left + (width - left - right) * (x - x0) / (x1 - x0)

    def py(v):
        return top + (height - top - bottom) * (1 - (v - y0) / (y1 - y0))

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
    return {
        "model": name,
        "width": width,
        "height": height,
        "left": left,
        "bottom": height - bottom,
        "right": width - right,
        "lines": lines,
        "yticks": yt,
        "xticks": xt,
    }


def histograms(report: Report, label: str | None, bins: int = 10) -> list[dict]:
    if label is None:
        return []
    # A non-finite value has no bin: the sample view shows it as such.
    per_model = [[v for r in m.records if finite(v := (r.get("metrics") or {}).get(label))] for m in report.models]
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
                "color": color(i),
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
