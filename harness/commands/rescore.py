"""`harness rescore RUN_DIR`."""

from __future__ import annotations

import argparse

HELP = "score a finished run again from its records (another tokenizer, metric or bootstrap) without a model"


def register(sub) -> None:
    p = sub.add_parser(
        "rescore",
        help=HELP,
        description=HELP + ".",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="The run's records and results.json stay as they are; the new figures and per-sample "
        "values go into RUN_DIR/results-rescored-HASH.json (or -o NAME). Show them with "
        "`harness report RUN_DIR --results NAME`. No model is loaded.\n\n"
        "examples:\n"
        "  harness rescore runs/RUN --set metrics.rouge.tokenizer=whitespace\n"
        "  harness rescore runs/RUN --metric rouge1:scorer=korean_competition --metric rougeL:scorer=korean_competition",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by harness eval (runs/RUN_ID)")
    p.add_argument(
        "--metric",
        action="append",
        default=[],
        metavar="NAME[:OPT=VAL,...]",
        help="replace the run's metric list (repeatable), e.g. --metric rouge1:tokenizer=kiwi",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="change the stored suite's scoring: metrics.NAME.OPTION=VALUE sets OPTION on every metric "
        "named NAME or starting with it (metrics.rouge.tokenizer=whitespace: every rouge*), "
        "metrics=[...] replaces the list, 'filters=[{function: first_line}]' extracts the answers again "
        "from the raw outputs, bootstrap.resamples=2000",
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="NAME",
        help="results file name inside RUN_DIR (default: results-rescored-<hash of the metric settings>.json)",
    )
    p.add_argument("--json", action="store_true", help="print the new results instead of the table")
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    from harness.commands.options import progress_printer
    from harness.config import parse_set_option
    from harness.runs.rescore import parse_metric_option, rescore
    from harness.runs.summary import results_table

    sets = [parse_set_option(s) for s in args.set]
    metrics = [parse_metric_option(m) for m in args.metric]
    result = rescore(args.run_dir, metrics, sets, args.output)
    log = progress_printer(args.json)
    for note in result.notes:
        log(note)
    if args.json:
        print(
            json.dumps({k: v for k, v in result.results.items() if k != "sample_metrics"}, ensure_ascii=False, indent=2)
        )
    else:
        print(results_table(result.results))
        print(f"\nresults: {result.path}")
    return 0
