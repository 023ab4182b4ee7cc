"""`harness report [RUN_DIR ...]`."""

from __future__ import annotations

import argparse

HELP = "turn run directories into one HTML page (metrics, training curves, samples side by side) or Markdown"


def register(sub) -> None:
    p = sub.add_parser(
        "report",
        help=HELP,
        description=HELP + ".",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Several runs of the same suite (same dataset sha256) merge into one comparison; runs of "
        "several suites make one page with a section per suite. "
        "Without --html/-o/--md the HTML page is written. The page is one file: "
        "no network needed, open it from disk.",
    )
    p.add_argument(
        "runs",
        nargs="*",
        metavar="RUN_DIR",
        help="run directories written by harness eval (default: the latest under --runs-root)",
    )
    p.add_argument("--html", action="store_true", help="write the HTML page (default: reports/SUITE-RUN_ID.html)")
    p.add_argument("-o", "--output", metavar="FILE", help="path of the HTML page (implies --html)")
    p.add_argument(
        "--md",
        nargs="?",
        const="",
        default=None,
        metavar="FILE",
        help="write a Markdown summary for a PR or model card (default FILE: reports/SUITE-RUN_ID.md)",
    )
    p.add_argument(
        "--target",
        metavar="SUITE_NAME",
        help="runs of several suites: the suite the adapters were trained for; the forgetting summary sets "
        "their gain on it beside their change on the others (default: the first run's suite)",
    )
    p.add_argument("--runs-root", default="runs", help="where to look for the latest run (default: runs/)")
    p.add_argument(
        "--results",
        default="results.json",
        metavar="NAME",
        help="results file inside each run directory: results.json (default) or one written by "
        "harness rescore, e.g. results-rescored-1a2b3c4d.json",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from harness.errors import HarnessError
    from harness.report import render_html, render_markdown
    from harness.report.forgetting import forgetting_text, target_index
    from harness.report.multi import forgetting, load_reports, multi_report_id, render_multi_html, render_multi_markdown
    from harness.runs.store import latest_run
    from harness.runs.summary import results_table
    from harness.runtime.console import terminal

    paths = args.runs or [latest_run(Path(args.runs_root))]
    reports = load_reports(paths, args.results)
    for note in (note for report in reports for run in report.runs for note in run.notes):
        print(f"harness report: note: {note}", file=terminal())
    one = reports[0] if len(reports) == 1 else None
    report_id = one.report_id if one else multi_report_id(reports)
    target = target_index([r.suite for r in reports], args.target)
    table, why = forgetting(reports, target)
    if why:
        print(f"harness report: note: no forgetting summary: {why}", file=terminal())
    want_html = bool(args.html or args.output or args.md is None)
    written = []
    if want_html:
        html = render_html(one) if one else render_multi_html(reports, target)
        written.append(_write(Path(args.output or f"reports/{report_id}.html"), html, HarnessError))
    if args.md is not None:
        md = render_markdown(one) if one else render_multi_markdown(reports, target)
        written.append(_write(Path(args.md or f"reports/{report_id}.md"), md, HarnessError))
    for report in reports:
        print(results_table(report.results_for_table()))
        print()
    if table:
        print(forgetting_text(table) + "\n")
    for path in written:
        print(f"report: {path}")
    return 0


def _write(path, text: str, error) -> object:
    import os

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise error(f"{path}: cannot write the report ({exc.strerror or exc})") from None
    return path
