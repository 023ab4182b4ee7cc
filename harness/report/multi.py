"""Runs of several suites in one report: the runs grouped by suite (in the order given), each group
merged as `harness report` merges runs of one suite, and one page with a section per suite (eval loss,
perplexity and generation metrics side by side). Each section holds the suite's overview, metrics,
charts and sweep; the sample viewer, which needs the page to itself, stays in each suite's own report.
Above the sections, when the suites share the base and adapters, the forgetting summary
(harness.report.forgetting): each adapter's gain on the target suite beside its change on the others.
Every name and value reaches the page through autoescaping, as in a single-suite page."""

from __future__ import annotations

import time
from pathlib import Path

from harness import __version__
from harness.report.forgetting import forgetting_markdown, forgetting_table, from_report
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


def forgetting(reports: list[Report], target: int = 0) -> tuple[dict | None, str | None]:
    """The forgetting summary of these suites with `target` (an index) as the target, or why there is none."""
    return forgetting_table([from_report(r) for r in reports], target)


def render_multi_html(reports: list[Report], target: int = 0) -> str:
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
            forgetting=forgetting(reports, target)[0],
            generated_at=time.strftime("%Y-%m-%d %H:%M:%S %z"),
            version=__version__,
        )
    )


def render_multi_markdown(reports: list[Report], target: int = 0) -> str:
    """Each suite's Markdown summary in turn, under a line naming them all and the forgetting summary."""
    head = f"# harness report: {len(reports)} suites ({', '.join(md_escape(r.suite) for r in reports)})\n\n"
    table, _ = forgetting(reports, target)
    summary = "\n".join(forgetting_markdown(table)) + "\n\n" if table else ""
    return head + summary + "\n".join(render_markdown(r) for r in reports)
