"""Runs of several suites in one report: the runs grouped by suite (in the order given), each group
merged as `harness report` merges runs of one suite, and one page with a section per suite (eval loss,
perplexity and generation metrics side by side). Each section holds the suite's overview, metrics,
charts and sweep; the sample viewer, which needs the page to itself, stays in each suite's own report.
Every name and value reaches the page through autoescaping, as in a single-suite page."""

from __future__ import annotations

import time
from pathlib import Path

from harness import __version__
from harness.report.load import Report, load_runs, merge_runs
from harness.report.markdown import md_escape, render_markdown
from harness.report.render import page_context, template_env


def load_reports(paths: list[str | Path], results_file: str = "results.json") -> list[Report]:
    """One Report per suite among the runs, in the order their suites first appear."""
    groups: dict[str, list] = {}
    for run in load_runs(paths, results_file):
        groups.setdefault(str(run.results["suite"]), []).append(run)
    return [merge_runs(group) for group in groups.values()]


def multi_report_id(reports: list[Report]) -> str:
    return "+".join(r.report_id for r in reports)


def render_multi_html(reports: list[Report]) -> str:
    sections = []
    for i, report in enumerate(reports, 1):
        context = page_context(report)
        context["anchor"] = f"suite-{i}"
        sections.append(context)
    return (
        template_env()
        .get_template("multi.html.j2")
        .render(
            title=f"{', '.join(r.suite for r in reports)} — harness report",
            suites=sections,
            generated_at=time.strftime("%Y-%m-%d %H:%M:%S %z"),
            version=__version__,
        )
    )


def render_multi_markdown(reports: list[Report]) -> str:
    """Each suite's Markdown summary in turn, under a line naming them all."""
    head = f"# harness report: {len(reports)} suites ({', '.join(md_escape(r.suite) for r in reports)})\n\n"
    return head + "\n".join(render_markdown(r) for r in reports)
