"""The report's memory chart per trained model: the memory its training used at each logging step, from
the train record's history, labelled with what was measured (GPU memory on CUDA, the process's resident
memory elsewhere)."""

from __future__ import annotations

from harness.report.charts import as_mapping, curve_chart, history_series
from harness.report.load import Report

# The history keys harness.train.memory writes → (legend, colour, when it was measured).
_BETWEEN_LOGS = "peak since the previous log"
MEMORY_SERIES = {
    "gpu_peak_allocated_mib": ("GPU allocated", "#4e79a7", _BETWEEN_LOGS),
    "gpu_peak_reserved_mib": ("GPU reserved (torch's allocator)", "#f28e2b", _BETWEEN_LOGS),
    "process_rss_mib": ("process resident memory (RSS)", "#59a14f", "at the log"),
}


def memory_charts(report: Report) -> list[dict]:
    """One chart per trained model whose train record logged memory, by step."""
    charts = []
    for m in report.models:
        record = as_mapping((m.info or {}).get("train_record"))
        series = history_series(record, tuple(MEMORY_SERIES))
        if not series:
            continue
        # GiB past a few thousand MiB: the axis' three significant digits would print 1.23e+04.
        unit, scale = ("GiB", 1024) if max(v for pts in series.values() for _, v in pts) > 2048 else ("MiB", 1)
        series = {key: [(step, v / scale) for step, v in pts] for key, pts in series.items()}
        chart = curve_chart(m.name, series)
        chart["unit"] = unit
        for line in chart["lines"]:
            line["legend"], line["color"], chart["when"] = MEMORY_SERIES[line["key"]]
            line["peak"] = round(max(v for _, v in series[line["key"]]), 2)
        charts.append(chart)
    return charts
