"""`harness train [CONFIG]`."""

from __future__ import annotations

import argparse
import logging
from contextlib import contextmanager
from pathlib import Path

from harness.commands.options import add_num_processes_option
from harness.runs.tables import format_table
from harness.runtime.console import human_bytes

DEFAULT_PRESET = str(Path(__file__).resolve().parents[1] / "data" / "presets" / "tiny-ko-qa.yaml")
# The Trainer's log entries (loss, learning rate, … every logging_steps) stay in the run's log file; the
# progress bar shows the latest losses.
LOG_FILE_ONLY = "harness.train.progress"
HELP = "QLoRA fine-tune a base model into adapters/NAME/ (no CONFIG: tiny model on the built-in Korean sample)"


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help=HELP,
        description=HELP + ".",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Every config field is documented in docs/configuration.md.",
    )
    p.add_argument(
        "config",
        nargs="?",
        help="train YAML file; omitted: the built-in preset tiny-ko-qa (tiny:llama-ko on builtin:korquad_sample)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a config field, e.g. --set training.max_steps=20 (repeatable; value read as YAML)",
    )
    p.add_argument("--name", help="adapter name (output goes to adapters/NAME unless output_dir is set)")
    p.add_argument("--output-dir", help="where the adapter and its train record go")
    p.add_argument("--base", help="base model: hub id, local path or tiny:llama-ko")
    p.add_argument("--data", help="training data: a path, a hub id or builtin:NAME")
    p.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="FIELD=V1,V2,...",
        help="train one adapter per value, each into OUTPUT_DIR/POINT/ (e.g. --sweep lora.r=4,8,16: r=4/, r=8/, r=16/; repeatable: "
        "a grid; values read as YAML); a record of the points goes to OUTPUT_DIR/sweep.json",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from the last checkpoint in OUTPUT_DIR/checkpoints; with --sweep: skip the finished "
        "points and train the failed or unfinished ones",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an adapter already in the output directory")
    add_num_processes_option(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from harness.config import TrainConfig, load_config, parse_set_option
    from harness.runtime.distributed import Dist
    from harness.train.recipe import train

    overrides = dict(parse_set_option(s) for s in args.set)
    for flag, field in (("name", "name"), ("output_dir", "output_dir"), ("base", "base"), ("data", "data.path")):
        if getattr(args, flag):
            overrides[field] = getattr(args, flag)
    config_path = args.config
    if config_path is None:
        config_path = DEFAULT_PRESET
        print(f"harness train: no config given; using the built-in preset {config_path}")
    if args.sweep:
        return _run_sweep(args, config_path, overrides)
    config = load_config(TrainConfig, config_path, overrides)
    with _train_lines_on_stdout(Dist.current().main):  # the other ranks' lines stay in their log files
        record = train(config, resume=args.resume, overwrite=args.overwrite)
    if not record:  # a rank other than 0: rank 0 saved and reports
        return 0
    print(summary(record, config.output_dir))
    return 0


def _run_sweep(args, config_path: str, overrides: dict) -> int:
    from harness.runtime.console import terminal
    from harness.runtime.distributed import Dist
    from harness.train.sweep import plan_sweep
    from harness.train.sweep_run import run_sweep

    sweep = plan_sweep(config_path, overrides, args.sweep)
    main = Dist.current().main
    print(f"harness train: sweep of {len(sweep.points)} points into {sweep.directory}")
    with _train_lines_on_stdout(main):
        record = run_sweep(sweep, resume=args.resume, overwrite=args.overwrite)
    if not main:
        return 0
    print(sweep_summary(record, sweep.directory))
    failed = [p["name"] for p in record["points"] if p["status"] != "ok"]
    if failed:
        print(
            f"harness train: {len(failed)} of {len(record['points'])} sweep points failed: {', '.join(failed)}; "
            "their errors are above and in sweep.json; fix the cause and run the same command with --resume",
            file=terminal(),
        )
        return 1
    return 0


def sweep_summary(record: dict, directory) -> str:
    def num(value, digits=4):
        return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"

    rows = [
        (
            p["name"],
            p["status"],
            num(p.get("train_loss")),
            num(p.get("eval_loss")),
            f"{num(p.get('runtime_s'), 1)} s" if p.get("runtime_s") is not None else "-",
            _cut(p.get("error") or p.get("output_dir") or "", 80),
        )
        for p in record["points"]
    ]
    table = format_table(["point", "status", "train loss", "eval loss", "runtime", "adapter / error"], rows)
    return f"{table}\n\nsweep: {directory} (record: sweep.json)"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _StdoutLines(logging.Handler):
    """A log record's message alone, on stdout, as harness's own lines are."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name != LOG_FILE_ONLY and super().filter(record)

    def emit(self, record: logging.LogRecord) -> None:
        print(record.getMessage())


@contextmanager
def _train_lines_on_stdout(show: bool):
    """harness.train's INFO lines (examples, plan, resumption, out-of-memory retries) on stdout as well as
    in the log file, while training runs."""
    if not show:
        yield
        return
    logger = logging.getLogger("harness.train")
    handler, level = _StdoutLines(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def summary(record: dict, output_dir: str) -> str:
    history = record["history"]
    losses = [h["loss"] for h in history if "loss" in h]
    evals = [h["eval_loss"] for h in history if "eval_loss" in h]
    rows = [
        ("base", record["base_model"]),
        ("examples (train / validation)", f"{record['data']['examples']} / {record['data']['validation_examples']}"),
        ("steps", record["global_steps"]),
        ("loss (first → last)", f"{losses[0]:.4f} → {losses[-1]:.4f}" if losses else "-"),
        ("eval loss (last)", f"{evals[-1]:.4f}" if evals else "-"),
        ("run as", _run_as(record.get("plan", {}))),
        ("runtime", f"{record['train_runtime_s']:.1f} s"),
        ("tokens/s", f"{record['tokens_per_second']:.0f}" if record["tokens_per_second"] else "-"),
        ("peak memory", _peak_memory(record)),
        ("adapter", output_dir),
    ]
    return format_table(["train", ""], rows)


def _peak_memory(record: dict) -> str:
    memory = record.get("memory") or {}
    peak = human_bytes(record["peak_memory_bytes"])
    if memory.get("kind") == "gpu":
        return f"{peak} GPU allocated ({human_bytes(memory['peak_reserved_bytes'])} reserved)"
    return f"{peak} process resident (RSS)" if memory else peak


def _run_as(plan: dict) -> str:
    if "batch_size" not in plan:
        return "-"
    flags = [
        name
        for key, name in (
            ("padding_free", "padding-free"),
            ("liger", "Liger"),
            ("gradient_checkpointing", "recomputation"),
            ("dequantize_base", "dequantized base"),
        )
        if plan.get(key)
    ]
    found = " (found by probing)" if plan.get("batch_probe") else ""
    return f"micro-batch {plan['batch_size']} × {plan['gradient_accumulation']}{found}" + "".join(
        f", {f}" for f in flags
    )
