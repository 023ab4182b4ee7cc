"""`harness chat`: talk to the base or an adapter, switching without reloading."""

from __future__ import annotations

import argparse

from harness.commands.options import add_generation_options, add_model_options

HELP = "chat interactively with the base or an adapter (chat template, history, streaming)"


def register(sub) -> None:
    p = sub.add_parser(
        "chat",
        help=HELP,
        description=HELP + ".",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="In the session: /model NAME, /set FIELD VALUE, /reset, /save FILE, /help. "
        "Ctrl-C stops an answer, Ctrl-D leaves.",
    )
    add_model_options(p, no_base=False)
    p.add_argument("--system", metavar="TEXT", help="system message put before the conversation")
    add_generation_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from harness.commands.options import generation_settings, parse_adapters
    from harness.config import Quantization
    from harness.data.prompts import apply_chat_template
    from harness.generate.chat import ChatSession, refuse_encoder_decoder
    from harness.model.adapters import attach_adapters
    from harness.model.loading import load_base
    from harness.runtime.env import detect

    adapters = parse_adapters(args.adapter)
    settings = generation_settings(args)
    base = load_base(
        args.base,
        Quantization(mode=args.quantization),
        detect(),
        device_map=args.device_map,
        max_memory_per_gpu=args.max_memory_per_gpu,
    )
    refuse_encoder_decoder(args.base, base.model, base.tokenizer)
    apply_chat_template(base.tokenizer, "")  # a base without a chat template is refused before the session
    models = attach_adapters(base, adapters)
    return ChatSession(models, ["base", *adapters], settings, system=args.system, engine=args.engine).run()
