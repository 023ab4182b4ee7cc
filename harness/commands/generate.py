"""`harness generate`: try the base and adapters on your own prompts, side by side."""

from __future__ import annotations

import argparse

from harness.commands.options import add_generation_options, add_model_options, add_num_processes_option

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
    import shutil
    import sys

    from harness.commands.options import generation_settings, parse_adapters, parse_compare
    from harness.config import Quantization, SuiteConfig, load_config
    from harness.config.generation import expand_grid
    from harness.data.prompts import apply_chat_template, load_template
    from harness.engine.weights import choose_weights
    from harness.errors import ConfigError
    from harness.generate.run import (
        JsonlAppender,
        build_prompts,
        check_context,
        read_prompt_file,
        render_prompt,
        run_generate,
        summary_table,
    )
    from harness.model.adapters import attach_adapters
    from harness.model.loading import load_base
    from harness.runtime.env import detect, eval_batch_size

    # Everything a user can get wrong is checked before the model loads.
    adapters = parse_adapters(args.adapter)
    names = ([] if args.no_base else ["base"]) + list(adapters)
    if not names:
        raise ConfigError("--no-base without --adapter: nothing would answer; give an adapter or drop --no-base")
    if args.batch_size is not None and args.batch_size <= 0:
        raise ConfigError(f"--batch-size {args.batch_size}: must be a positive number")
    suite = load_config(SuiteConfig, args.suite) if args.suite else None
    settings = generation_settings(args, suite.generation if suite else None)
    grid = {**(suite.generation_grid if suite else {}), **parse_compare(args.compare)}
    variants = expand_grid(settings, grid, "--compare")

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
    items = build_prompts(raw, template, suite.dataset.fields if suite else None)
    chat = args.chat or bool(suite and suite.prompt.chat)
    system = args.system if args.system is not None else (suite.prompt.system if suite else None)

    from harness.runtime.distributed import Dist

    env = detect()
    dist = Dist.current()  # under accelerate launch: each rank answers its share of the prompts
    base = load_base(
        args.base,
        Quantization(mode=args.quantization),
        env,
        local_rank=dist.local_rank,
        device_map=args.device_map,
        max_memory_per_gpu=args.max_memory_per_gpu,
    )
    models = attach_adapters(base, adapters)
    prompts = [apply_chat_template(base.tokenizer, i.text, system) if chat else i.text for i in items]
    check_context(base.tokenizer, base.model, prompts, [i.id for i in items], variants, chat)
    batch_size = args.batch_size or eval_batch_size(env)
    weights, _note = choose_weights(models, args.engine, "--engine")
    columns = len(names) * len(variants)
    streaming = len(items) == 1 and columns == 1 and not args.quiet and not dist.active
    if dist.main:
        print(
            f"harness generate: {len(items)} prompt(s) × {columns} model(s) "
            f"[{', '.join(v.label(n) for n in names for v in variants)}], {env.device}/{base.compute_dtype}"
            + (f" × {dist.world} processes" if dist.active else "")
            + (f" → {args.out}" if args.out else "")
        )

    def stream(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    if streaming:
        print(f"━━ prompt {items[0].id} ▸ {variants[0].label(names[0])}")
    # Each rank appends to its own shard of --out as answers finish; rank 0 then appends them all to --out.
    shard_out = _shard_path(args.out, dist.rank) if dist.active and args.out else None
    append = JsonlAppender(shard_out or args.out)
    try:
        # Every rank plans the batches of all prompts and runs its share of them (`generation.generate`).
        records, wall = run_generate(
            models,
            names,
            items,
            prompts,
            variants,
            batch_size,
            append,
            stream=stream if streaming else None,
            engine=args.engine,
            dense=weights == "dense",
            shard=dist if dist.active else None,
            chat=chat,
        )
    finally:
        append.close()
    if dist.active:
        parts = dist.all_gather((records, wall))
        if not dist.main:
            return 0
        position = {item.id: n for n, item in enumerate(items)}
        records = sorted((r for part, _ in parts for r in part), key=lambda r: position[r["prompt_id"]])
        wall = {column: max(w.get(column, 0.0) for _, w in parts) for column in parts[0][1]}
        if args.out:
            merged = JsonlAppender(args.out)
            for record in records:
                merged(record)
            merged.close()
            for rank in range(dist.world):
                _shard_path(args.out, rank).unlink(missing_ok=True)

    if streaming:
        from harness.generate.run import stats_line

        print("\n  · " + stats_line(records[0]))
    elif not args.quiet:
        width = shutil.get_terminal_size((100, 24)).columns
        side = sys.stdout.isatty() and width >= 44 * columns
        by_prompt: dict[str, list[dict]] = {}
        for record in records:
            by_prompt.setdefault(record["prompt_id"], []).append(record)
        order = {v.label(n): k for k, (n, v) in enumerate((n, v) for n in names for v in variants)}
        for item in items:
            recs = sorted(by_prompt.get(item.id, []), key=lambda r: order[r["column"]])
            print(render_prompt(item, recs, width, side) + "\n")
    if not streaming:
        print(summary_table(records, wall))
    if args.out:
        print(f"\nrecords: {args.out}")
    return 0


def _shard_path(out: str, rank: int):
    from pathlib import Path

    path = Path(out)
    return path.with_name(f"{path.stem}.rank{rank}{path.suffix}")
