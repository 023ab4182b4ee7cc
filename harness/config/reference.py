"""The configuration reference, docs/configuration.md, rendered from the config models' fields.

Every field's name, type, allowed values, default and description come from the pydantic models
that validate the YAML, so the reference cannot drift from what is accepted; a test compares the
file with this module's output. Regenerate it with:

    python -m harness.config.reference > docs/configuration.md
"""

from __future__ import annotations

import json
import sys
import types
import typing
from typing import Any, Literal, Union

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from harness.config.suite import SuiteConfig
from harness.config.train import TrainConfig

COMMAND = "python -m harness.config.reference > docs/configuration.md"

INTRO = f"""\
# Configuration reference

<!-- Generated from the config models in harness/config/ by `{COMMAND}`; do not edit by hand. -->

Every config is YAML validated into typed objects: an unknown key is rejected with the nearest
valid name, a wrong type names the field path and the expected value, and numbers must be finite
(`.inf` and `.nan` are refused). On the command line `--set FIELD=VALUE` overrides any field
(`--set training.max_steps=20`, the value read as YAML). A field not given takes its default.
"""

# (section title, command that reads it, model, what it is)
SECTIONS: tuple[tuple[str, str, type[BaseModel], str], ...] = (
    (
        "train",
        "harness train [CONFIG]",
        TrainConfig,
        "A training config; none given: the preset `harness/data/presets/tiny-ko-qa.yaml`. "
        "`configs/qlora-ko-qa.yaml` is a commented example for a real base.",
    ),
    (
        "suite",
        "harness eval SUITE",
        SuiteConfig,
        "An eval suite: what to evaluate and on which models (`suites/` holds the shipped ones). "
        "The `generation` fields are also `harness generate`'s and `harness chat`'s flags and `/set` fields.",
    ),
)

_BOUNDS = ((annotated_types.Gt, "gt", ">"), (annotated_types.Ge, "ge", "≥"), (annotated_types.Lt, "lt", "<"))
_BOUNDS += ((annotated_types.Le, "le", "≤"),)
_SCALARS = {int: "int", float: "float", bool: "bool", str: "str", Any: "any", type(None): "null"}


def render() -> str:
    """The whole reference as Markdown."""
    parts = [INTRO]
    for title, command, model, about in SECTIONS:
        parts.append(f"## {title} (`{command}`)\n\n{about}\n")
        parts.extend(_tables(model, ""))
    return "\n".join(parts)


def _tables(model: type[BaseModel], prefix: str, about: str = "") -> list[str]:
    """One table for `model`'s own fields, then one per nested model (depth first)."""
    rows, nested = [], []
    for name, info in model.model_fields.items():
        sub = _model_of(info.annotation)
        if sub is not None:
            nested.append((f"{prefix}{name}", sub, info.description or ""))
        else:
            rows.append(_row(f"{prefix}{name}", info))
    parts = []
    if rows:
        heading = f"### `{prefix.rstrip('.')}`: {about}\n\n" if prefix else ""
        header = "| field | type | default | meaning |\n| --- | --- | --- | --- |\n"
        parts.append(heading + header + "\n".join(rows) + "\n")
    for path, sub, description in nested:
        parts.extend(_tables(sub, f"{path}.", description))
    return parts


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _row(path: str, info: FieldInfo) -> str:
    kind = _type(info.annotation)
    bounds = [f"{sign} {getattr(m, attr)}" for m in info.metadata for cls, attr, sign in _BOUNDS if isinstance(m, cls)]
    if bounds:
        kind += ", " + ", ".join(bounds)
    default = "required" if info.is_required() else f"`{_yaml(info.get_default(call_default_factory=True))}`"
    cells = (f"`{path}`", kind, default, info.description or "")
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _type(annotation: Any) -> str:
    """`int or auto`, `nf4, fp4, int8 or none`, `list of str`: what a YAML author may write."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        values = [f"`{_yaml(v)}`" for v in args]
        return values[0] if len(values) == 1 else ", ".join(values[:-1]) + " or " + values[-1]
    if origin in (Union, types.UnionType):
        return " or ".join(_type(arg) for arg in args)
    if origin is list:
        inner = _type(args[0])
        return f"list of ({inner})" if " or " in inner else f"list of {inner}"
    if origin is dict:
        return f"map of {_type(args[0])} → {_type(args[1])}"
    return _SCALARS.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _yaml(value: Any) -> str:
    """A default as it would be written in YAML flow style."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        plain = value and value.strip() == value and value.isprintable() and value[0] not in "[{'\"&*!|>%@`#"
        return value if plain else json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml(v)}" for k, v in value.items()) + "}"
    return str(value)


if __name__ == "__main__":
    sys.stdout.write(render())
