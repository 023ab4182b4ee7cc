"""The report's memory chart: drawn from the memory series a train record's history carries (the keys
harness.train.memory logs), labelled with what was measured, and absent where no memory was logged."""

from __future__ import annotations

import json
import re

from harness.report import load_report, render_html
from harness.train.memory import GPU_ALLOCATED, GPU_RESERVED


def with_gpu_memory(run) -> None:
    """Give the run's adapters a history with GPU memory, as a CUDA training run logs it."""
    path = run / "results.json"
    results = json.loads(path.read_text(encoding="utf-8"))
    for model in results["models"]:
        record = model.get("train_record")
        for i, entry in enumerate(record["history"] if record else []):
            if "loss" in entry:
                entry.update({GPU_ALLOCATED: 5000.0 + 100 * i, GPU_RESERVED: 6000.0 + 100 * i})
    path.write_text(json.dumps(results), encoding="utf-8")


def test_memory_chart_per_adapter_with_what_was_measured(qa_run):
    with_gpu_memory(qa_run)
    html = render_html(load_report([qa_run]))
    figures = re.findall(r'<figure class="chart memory"[^>]*>(.*?)</figure>', html, re.S)
    assert len(figures) == 2  # the two adapters; the base has no train record
    assert "GPU allocated (max 5.37)" in figures[0] and "GPU reserved (torch&#39;s allocator)" in figures[0]
    assert "peak since the previous log; x: step" in figures[0]
    assert len(re.findall(r"<polyline", figures[0])) == 2 and ", GiB —" in figures[0]
    assert 'data-section="training"' in html and "Memory during training" in html


def test_no_memory_chart_without_memory_in_the_history(qa_run):
    html = render_html(load_report([qa_run]))
    assert '<figure class="chart memory"' not in html and "Memory during training" not in html


def test_the_report_draws_every_series_training_logs():
    from harness.report.memory_chart import MEMORY_SERIES
    from harness.train.memory import MEMORY_KEYS

    assert set(MEMORY_SERIES) == set(MEMORY_KEYS)
