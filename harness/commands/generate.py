"""`harness generate`: try the base and adapters on your own prompts, side by side."""

from __future__ import annotations

import argparse
import shutil
import sys

from harness.commands.options import (
    add_generation_options,
    add_model_options,
    add_num_processes_option,
    generation_settings,
    parse_adapters,
    parse_compare,
)
from harness.errors import ConfigError

HELP = "answer your own prompts with the base and adapters side by side (also batch inference to JSONL)"


def register(sub) -> None:
    p = sub.add_parser(
        "generate",
        help=HELP,
        description=HELP + ".",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Example: harness generate --base tiny:llama-ko --adapter ko=adapters/tiny-ko-qa "
        "--prompt '한국의 수도는?' --compare repetition_penalty=1.0,1.3",
    )
    add_model_options(p)
    p.add_argument("--prompt", action="append", default=[], metavar="TEXT", help="a prompt (repeatable)")
    p.add_argument(
        "--prompts",
        metavar="FILE",
        help="prompts file: .txt one per line, .jsonl with a 'prompt' field (or fields for --template)",
    )
    p.add_argument(
        "stdin", nargs="?", choices=["-"], metavar="-", help="read prompts from standard input, one per line"
    )
    p.add_argument(
        "--template",
        metavar="NAME|FILE",
        help="fill a prompt template (qa-ko, alpaca, ... or a YAML file) from each prompt's fields",
    )
    p.add_argument("--chat", action="store_true", help="wrap each prompt in the model's chat template")
    p.add_argument("--system", metavar="TEXT", help="system message for --chat")
    p.add_argument(
        "--suite",
        metavar="SUITE.yaml",
        help="take a suite's prompt template (and chat setting), generation block and generation_grid",
    )
    p.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="FIELD=V1,V2",
        help="run every value of a generation field for every model (repeatable: a grid)",
    )
    p.add_argument("--batch-size", type=int, help="generation batch size for many prompts (default: from the hardware)")
    p.add_argument(
        "--out", metavar="FILE.jsonl", help="append one JSON record per prompt × model × variant as it finishes"
    )
    p.add_argument("--quiet", action="store_true", help="print only the summary table, not every answer")
    add_num_processes_option(p)
    add_generation_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from harness.config import SuiteConfig, load_config
    from harness.config.generation import expand_grid
    from harness.data.prompts import apply_chat_template
    from harness.engine.weights import choose_weights
    from harness.generate.run import check_context, generate_to_file
    from harness.runtime.distributed import Dist
    from harness.runtime.env import detect, eval_batch_size

    # Everything a user can get wrong is checked before the model loads.
    suite = load_config(SuiteConfig, args.suite) if args.suite else None
    adapters, names = _models(args)
    settings = generation_settings(args, suite.generation if suite else None)
    grid = {**(suite.generation_grid if suite else {}), **parse_compare(args.compare)}
    variants = expand_grid(settings, grid, "--compare")
    items = _prompt_items(args, suite)
    chat = args.chat or bool(suite and suite.prompt.chat)
    system = args.system if args.system is not None else (suite.prompt.system if suite else None)

    env = detect()
    dist = Dist.current()  # under accelerate launch: each rank answers its share of the prompts
    models = _load_models(args, adapters, env, dist)
    tokenizer = models.base.tokenizer
    prompts = [apply_chat_template(tokenizer, i.text, system) if chat else i.text for i in items]
    check_context(tokenizer, models.base.model, prompts, [i.id for i in items], variants, chat)
    weights, _note = choose_weights(models, args.engine, "--engine")
    labels = [v.label(n) for n in names for v in variants]
    streaming = len(items) == 1 and len(labels) == 1 and not args.quiet and not dist.active
    if dist.main:
        print(
            f"harness generate: {len(items)} prompt(s) × {len(labels)} model(s) "
            f"[{', '.join(labels)}], {env.device}/{models.base.compute_dtype}"
            + (f" × {dist.world} processes" if dist.active else "")
            + (f" → {args.out}" if args.out else "")
        )
    if streaming:
        print(f"━━ prompt {items[0].id} ▸ {labels[0]}")
    # Every rank plans the batches of all prompts and runs its share of them (`generation.generate`).
    answered = generate_to_file(
        models,
        items,
        prompts,
        args.out,
        dist,
        names=names,
        variants=variants,
        batch_size=args.batch_size or eval_batch_size(env),
        stream=_stream if streaming else None,
        engine=args.engine,
        dense=weights == "dense",
        chat=chat,
    )
    if answered is not None:  # rank 0 shows every rank's answers
        _show(args, items, labels, *answered, streaming)
    return 0


def _models(args) -> tuple[dict[str, str], list[str]]:
    """The adapters to attach and the names of the models that answer."""
    adapters = parse_adapters(args.adapter)
    names = ([] if args.no_base else ["base"]) + list(adapters)
    if not names:
        raise ConfigError("--no-base without --adapter: nothing would answer; give an adapter or drop --no-base")
    if args.batch_size is not None and args.batch_size <= 0:
        raise ConfigError(f"--batch-size {args.batch_size}: must be a positive number")
    return adapters, names


def _prompt_items(args, suite):
    from harness.data.prompts import load_template
    from harness.generate.prompts import build_prompts, read_prompt_file

    sources = sum([bool(args.prompt), bool(args.prompts), bool(args.stdin)])
    if sources == 0:
        raise ConfigError("no prompts: give --prompt TEXT (repeatable), --prompts FILE or - to read standard input")
    if sources > 1:
        raise ConfigError("prompts from two places: give only one of --prompt, --prompts FILE and -")
    if args.prompt:
        raw = [(str(n), text) for n, text in enumerate(args.prompt, 1)]
    else:
        raw = read_prompt_file(args.prompts or "-")
    template = None
    if args.template:
        template = load_template(args.template, where="--template")
    elif suite is not None:
        template = load_template(suite.prompt.template, suite.prompt.text, where=f"{args.suite}: prompt.template")
    return build_prompts(raw, template, suite.dataset.fields if suite else None)


def _load_models(args, adapters: dict[str, str], env, dist):
    from harness.config import Quantization
    from harness.model.adapters import attach_adapters
    from harness.model.loading import load_base

    base = load_base(
        args.base,
        Quantization(mode=args.quantization),
        env,
        local_rank=dist.local_rank,
        device_map=args.device_map,
        max_memory_per_gpu=args.max_memory_per_gpu,
    )
    return attach_adapters(base, adapters)


def _stream(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _show(args, items, labels: list[str], records: list[dict], wall: dict[str, float], streaming: bool) -> None:
    from harness.generate.terminal import render_answers, stats_line, summary_table

    if streaming:
        print("\n  · " + stats_line(records[0]))
    elif not args.quiet:
        width = shutil.get_terminal_size((100, 24)).columns
        side = sys.stdout.isatty() and width >= 44 * len(labels)
        for block in render_answers(items, records, labels, width, side):
            print(block + "\n")
    if not streaming:
        print(summary_table(records, wall))
    if args.out:
        print(f"\nrecords: {args.out}")
