"""`harness eval SUITE`."""

from __future__ import annotations

import argparse

from harness.commands.options import add_num_processes_option, parse_adapters, progress_printer

HELP = "evaluate the base (4-bit) and adapters on suites: KorQuAD EM/F1, ROUGE, perplexity, multiple choice"


def register(sub) -> None:
    from harness.tasks import TASKS

    kinds = "".join(f"\n  {t.kind}: {t.summary}" for t in TASKS.values())
    p = sub.add_parser(
        "eval",
        help=HELP,
        description=HELP + ".",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"Task kinds (docs/tasks.md):{kinds}\nSuite fields: docs/configuration.md. "
        "Re-running the same command resumes from the records on disk. Several suites share the base and "
        "every option but --data and --run-id, which apply to one suite.",
    )
    p.add_argument(
        "suite",
        nargs="+",
        metavar="SUITE",
        help="suite YAML, e.g. suites/korquad_sample.yaml; several: each evaluated in turn on one loaded base, "
        "each in its own run directory, the forgetting summary at the end (the first suite is the target)",
    )
    p.add_argument("--base", help="base model: hub id, local path or tiny:llama-ko (overrides models.base)")
    _add_model_options(p)
    p.add_argument("--no-base", action="store_true", help="score only the adapters (no deltas are computed)")
    p.add_argument(
        "--data", help="dataset path or hub id (overrides dataset.path and its environment variable; one suite only)"
    )
    p.add_argument(
        "--limit",
        type=int,
        help="evaluate N examples, drawn as dataset.sample says: a seeded sample (default) or the first N "
        "(--set dataset.sample=first); overrides dataset.limit",
    )
    p.add_argument("--batch-size", type=int, help="generation batch size (default: from the hardware)")
    p.add_argument(
        "--engine",
        choices=["auto", "fast", "plain"],
        help="fast: dequantized weights, adapters kept unmerged, static-cache decoding; plain: 4-bit + peft "
        "+ transformers' generate; auto (default): fast where it fits in memory",
    )
    p.add_argument(
        "--verify",
        type=int,
        metavar="N",
        help="re-run N samples per model on the plain path (batch 1) and record how many answers agree",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override any suite field, e.g. --set generation.max_new_tokens=16 (value read as YAML)",
    )
    _add_output_options(p)
    add_num_processes_option(p)
    p.set_defaults(func=run)


def _add_output_options(p) -> None:
    p.add_argument("--out", default="runs", help="directory that receives run directories (default: runs/)")
    p.add_argument(
        "--run-id", help="name of the run directory (default: suite name + a hash of what is evaluated; one suite only)"
    )
    p.add_argument(
        "--json", action="store_true", help="print results.json instead of the table (several suites: a list of them)"
    )


def _add_model_options(p) -> None:
    """The models to score beside the suite's."""
    p.add_argument(
        "--adapter",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="add an adapter to compare (repeatable; a bare PATH is named after its directory)",
    )
    p.add_argument(
        "--sweep",
        metavar="DIR",
        help="add every finished adapter of a `harness train --sweep` directory, named after its point "
        "(e.g. r=8); the report then plots each metric against the swept field",
    )
    p.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="add a full model (e.g. a `harness merge` export) as its own column, loaded as exported "
        "(unquantized, in the base's compute dtype; see --model-quantization); deltas are against the base",
    )
    p.add_argument(
        "--model-quantization",
        choices=["none", "base"],
        default="none",
        help="how --model models load: none (default: as exported) or base (the base's quantization settings)",
    )
    p.add_argument(
        "--checkpoints",
        metavar="DIR",
        help="add every saved checkpoint of a `harness train` output directory (DIR/checkpoints/checkpoint-STEP, "
        "named step-N) and its final adapter (named final); the report plots each metric against the step "
        "and marks the best checkpoint",
    )


def run(args) -> int:
    import json

    from harness.runtime.distributed import Dist

    if len(args.suite) > 1:
        return run_several(args)
    from harness.evaluate.run import run_eval
    from harness.runs.summary import results_table

    suite = load_suite(args, args.suite[0])
    sources = model_sources(args, suite)
    # With --json, stdout carries only the JSON document; the progress line goes to stderr.
    log = progress_printer(args.json)
    result = run_eval(suite, args.suite[0], args.out, args.run_id, log=log, sources=sources)
    if not Dist.current().main:  # rank 0 prints the merged results
        return 0
    if args.json:
        print(json.dumps(result.results, ensure_ascii=False, indent=2))
    else:
        print(results_table(result.results))
        if best := (result.results.get("checkpoints") or {}).get("best"):
            print(f"\nbest checkpoint: {best['name']} (step {best['step']}, {best['metric']} {best['value']:.4g})")
        print(f"\nrun: {result.run_dir}")
    return 0


def load_suite(args, path: str):
    """The suite file with the command line's options applied."""
    from harness.config import SuiteConfig, load_config

    suite = load_config(SuiteConfig, path, suite_overrides(args))
    if args.adapter:
        suite.models.adapters = {**suite.models.adapters, **parse_adapters(args.adapter)}
    return suite


def suite_overrides(args) -> dict:
    """The suite fields the command line sets (--set and the options that stand for a field)."""
    from harness.config import parse_set_option
    from harness.errors import ConfigError

    overrides = dict(parse_set_option(s) for s in args.set)
    if args.base:
        overrides["models.base"] = args.base
    if args.data:
        overrides["dataset.path"] = args.data
        overrides["dataset.path_env"] = None
    if args.limit is not None:
        if args.limit <= 0:
            raise ConfigError(f"--limit {args.limit}: must be a positive number of samples")
        overrides["dataset.limit"] = args.limit
    if args.batch_size is not None:
        overrides["batch_size"] = args.batch_size
    if args.engine is not None:
        overrides["engine"] = args.engine
    if args.verify is not None:
        overrides["verify"] = args.verify
    if args.no_base:
        overrides["models.include_base"] = False
    return overrides


def run_several(args) -> int:
    """Several suites on one loaded base (harness.evaluate.suites): each suite's table, the forgetting
    summary (the adapters' deltas on the first suite beside those on the others), the run directories."""
    import json

    from harness.errors import ConfigError
    from harness.evaluate.suites import SuiteEntry, eval_suites
    from harness.runtime.distributed import Dist

    if args.data:
        raise ConfigError(
            "--data names one suite's dataset; with several suites give each its own through the variable "
            "its dataset.path_env names (e.g. KORQUAD_DEV=PATH), or evaluate that suite on its own"
        )
    if args.run_id:
        raise ConfigError("--run-id names one run directory; with several suites each gets its own: drop --run-id")
    entries = []
    for path in args.suite:
        suite = load_suite(args, path)
        entries.append(SuiteEntry(suite, path, model_sources(args, suite)))
    results = eval_suites(entries, args.out, progress_printer(args.json))
    if not Dist.current().main:
        return 0
    if args.json:
        print(json.dumps([r.results for r in results], ensure_ascii=False, indent=2))
    else:
        print(several_summary(results))
    return 0


def several_summary(results) -> str:
    """Each suite's table, the forgetting summary, every run directory and the report command."""
    import shlex

    from harness.report.forgetting import forgetting_table, forgetting_text, from_results
    from harness.runs.summary import results_table

    parts = [results_table(r.results) for r in results]
    table, _ = forgetting_table([from_results(r.results) for r in results])
    if table:
        parts.append(forgetting_text(table))
    dirs = [str(r.run_dir) for r in results]
    parts.append(f"runs: {' '.join(dirs)}\ncompare: harness report {' '.join(shlex.quote(d) for d in dirs)} --html")
    return "\n\n".join(parts)


def model_sources(args, suite):
    """The columns --sweep, --checkpoints and --model add to the suite's (the adapters added to it)."""
    from harness.errors import ConfigError
    from harness.evaluate.plan import Sources

    sources = Sources(full=parse_adapters(args.model, "--model"), full_quantization=args.model_quantization)
    if args.sweep:
        from harness.evaluate.sweep import sweep_models

        adapters, sources.sweep = sweep_models(args.sweep)
        _add_adapters(suite, adapters, f"--sweep {args.sweep}")
    if args.checkpoints:
        from harness.evaluate.checkpoints import checkpoint_models

        adapters, sources.checkpoints = checkpoint_models(args.checkpoints)
        _add_adapters(suite, adapters, f"--checkpoints {args.checkpoints}")
    if clash := sorted(set(sources.full) & set(suite.models.adapters)):
        raise ConfigError(f"--model {clash[0]}=...: the name is also an adapter's; give the model another name")
    return sources


def _add_adapters(suite, adapters: dict[str, str], option: str) -> None:
    """The adapters an option names, added to the suite's; a name given twice is refused."""
    from harness.errors import ConfigError

    clash = sorted(set(adapters) & set(suite.models.adapters))
    if clash:
        raise ConfigError(
            f"{option}: the adapter name '{clash[0]}' is also given in the suite or by another option; "
            "rename that adapter"
        )
    suite.models.adapters = {**suite.models.adapters, **adapters}
