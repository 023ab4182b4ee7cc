"""`harness report`: run directories → one self-contained HTML page and/or a Markdown summary.

Torch-free on purpose: only harness.runs.store, harness.runs.summary, harness.runs.tables, harness.errors,
jinja2 and the standard library, so a report opens on any machine that has the run files.
"""

from harness.report.load import Model, Report, Run, load_report, load_run, merge_runs
from harness.report.markdown import render_markdown
from harness.report.render import render_html, script_json
from harness.report.samples import sample_data

__all__ = [
    "Model",
    "Report",
    "Run",
    "load_report",
    "load_run",
    "merge_runs",
    "render_html",
    "render_markdown",
    "sample_data",
    "script_json",
]
