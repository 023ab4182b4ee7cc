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
        epilog="Several runs of the same suite (same dataset sha256) merge into one comparison. "
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
    from harness.report import load_report, render_html, render_markdown
    from harness.runs.store import latest_run
    from harness.runs.summary import results_table
    from harness.runtime.console import terminal

    paths = args.runs or [latest_run(Path(args.runs_root))]
    report = load_report(paths, args.results)
    for note in (note for run in report.runs for note in run.notes):
        print(f"harness report: note: {note}", file=terminal())
    want_html = bool(args.html or args.output or args.md is None)
    written = []
    if want_html:
        written.append(
            _write(Path(args.output or f"reports/{report.report_id}.html"), render_html(report), HarnessError)
        )
    if args.md is not None:
        written.append(_write(Path(args.md or f"reports/{report.report_id}.md"), render_markdown(report), HarnessError))
    print(results_table(report.results_for_table()))
    print()
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
