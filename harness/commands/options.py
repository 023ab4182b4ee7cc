"""Options shared by the commands that load models and generate (eval, generate, chat).

The generation flags are built from `GenerationSettings.model_fields`, so `harness generate
--repetition-penalty` and a suite's `generation.repetition_penalty` are one definition with one
default and one validation.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, get_args, get_origin

from harness.config.loader import check_name
from harness.errors import ConfigError


def parse_adapters(values: list[str], option: str = "--adapter") -> dict[str, str]:
    """`--adapter NAME=PATH` (or `option`; repeatable; a bare PATH is named after its directory) → {name: path}."""
    adapters = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep:
            name, path = Path(value.rstrip("/")).name, value
        if not name or not path:
            raise ConfigError(f"{option} {value}: expected NAME=PATH")
        if name == "base" or "/" in name:
            raise ConfigError(
                f"{option} {value}: the name '{name}' is reserved or invalid; use a plain name other than 'base'"
            )
        if name in adapters:
            raise ConfigError(f"{option} {value}: the name '{name}' is given twice; names must be unique")
        try:
            check_name(name, f"{option[2:]} name")
        except ValueError as exc:
            raise ConfigError(f"{option} {value[:60]}: {exc}") from None
        adapters[name] = path
    return adapters


def add_model_options(p: argparse.ArgumentParser, no_base: bool = True) -> None:
    p.add_argument("--base", required=True, help="base model: hub id, local path or tiny:llama-ko")
    p.add_argument(
        "--adapter",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="attach an adapter to the base (repeatable; a bare PATH is named after its directory)",
    )
    if no_base:
        p.add_argument("--no-base", action="store_true", help="only the adapters answer, not the base")
    p.add_argument(
        "--quantization",
        choices=("nf4", "fp4", "int8", "none"),
        default="nf4",
        help="how the base loads, as a suite's models.quantization.mode (default: nf4, 4-bit)",
    )
    p.add_argument(
        "--device-map",
        choices=("single", "auto"),
        default="single",
        help="single: the base on one GPU; auto: split a base too large for one GPU over all visible GPUs",
    )
    p.add_argument(
        "--max-memory-per-gpu", metavar="SIZE", help="with --device-map auto: the most each GPU may hold, e.g. 70GiB"
    )
    p.add_argument(
        "--engine",
        choices=("auto", "fast", "plain"),
        default="auto",
        help="fast: static-cache decoding (CUDA graphs on a GPU), batches on weights dequantized once with "
        "the adapters kept unmerged; plain: 4-bit + peft + transformers' generate; auto (default): fast "
        "where it fits in memory",
    )


def add_num_processes_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--num-processes",
        type=int,
        metavar="N",
        help="data-parallel over N processes: re-runs this command under `accelerate launch "
        "--num_processes N` (one per GPU; gloo processes on CPU)",
    )


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def _is_list(annotation: Any) -> bool:
    return get_origin(annotation) is list or any(_is_list(a) for a in get_args(annotation))


def add_generation_options(p: argparse.ArgumentParser) -> None:
    """One flag per generation field (`--max-new-tokens`, `--do-sample/--no-do-sample`, `--stop` repeatable).

    Values stay strings here: `generation_settings` validates them through the pydantic model.
    """
    from harness.config.generation import GenerationSettings

    group = p.add_argument_group("generation options (the suite's generation fields; defaults as there)")
    group.add_argument(
        "--generation",
        metavar="FILE.yaml",
        help="read generation fields from a YAML file (a mapping of fields, or a 'generation:' block)",
    )
    for name, info in GenerationSettings.model_fields.items():
        default = info.get_default(call_default_factory=True)
        help_text = f"{info.description or name} (default: {default!r})".replace("%", "%%")
        if info.annotation is bool:
            group.add_argument(
                flag_name(name), dest=f"gen_{name}", action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        elif _is_list(info.annotation):
            group.add_argument(
                flag_name(name),
                dest=f"gen_{name}",
                action="append",
                default=None,
                metavar="TEXT",
                help=help_text + "; repeatable; \\n and \\t are read as a line break and a tab",
            )
        else:
            group.add_argument(flag_name(name), dest=f"gen_{name}", default=None, metavar="VALUE", help=help_text)


def unescape(text: str) -> str:
    return text.replace("\\n", "\n").replace("\\t", "\t")


def given_generation_options(args) -> dict[str, Any]:
    from harness.config.generation import FIELDS

    given = {}
    for name in FIELDS:
        value = getattr(args, f"gen_{name}", None)
        if value is not None:
            given[name] = [unescape(v) for v in value] if isinstance(value, list) else value
    return given


def read_generation_file(path: str) -> dict[str, Any]:
    import yaml

    file = Path(path)
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"--generation {path}: cannot read ({exc.strerror or exc}); check the path") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"--generation {path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except yaml.YAMLError:
        raise ConfigError(f"--generation {path}: invalid YAML; write a mapping of generation fields") from None
    raw = raw or {}
    if isinstance(raw, dict) and set(raw) == {"generation"}:
        raw = raw["generation"] or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"--generation {path}: expected a mapping of generation fields, got {type(raw).__name__}")
    return raw


def generation_settings(args, start=None):
    """Settings from (the suite's or default) `start`, then --generation FILE, then the flags."""
    from harness.config.generation import GenerationSettings, with_overrides

    settings = start or GenerationSettings()
    if getattr(args, "generation", None):
        settings = with_overrides(settings, read_generation_file(args.generation), f"--generation {args.generation}")
    return with_overrides(settings, given_generation_options(args), "generation options")


def parse_compare(values: list[str]) -> dict[str, list[Any]]:
    """`--compare repetition_penalty=1.0,1.15` (repeatable: a grid) → {field: [values]} (values read as YAML)."""
    import yaml

    from harness.config.generation import GenerationSettings, check_field

    grid: dict[str, list[Any]] = {}
    for text in values:
        name, sep, rest = text.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name or not rest:
            raise ConfigError(f"--compare {text}: expected FIELD=V1,V2,..., e.g. --compare repetition_penalty=1.0,1.15")
        check_field(name, f"--compare {text}")
        if name in grid:
            raise ConfigError(f"--compare {text}: field '{name}' is given twice; list all its values in one --compare")
        is_list = _is_list(GenerationSettings.model_fields[name].annotation)
        parsed = []
        for raw in rest.split(","):
            if is_list:
                parsed.append([unescape(raw)] if raw else [])
                continue
            try:
                parsed.append(yaml.safe_load(raw))
            except yaml.YAMLError:
                parsed.append(raw)
        grid[name] = parsed
    return grid


def progress_printer(json_output: bool):
    """How a command prints its progress lines: to stdout, or to stderr when stdout carries only --json's document."""
    from harness.runtime.console import terminal

    return (lambda message: print(message, file=terminal())) if json_output else print
