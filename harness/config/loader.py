"""YAML in, validated objects inside: one loader and one way to report what is wrong."""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from harness.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """Base of every config: unknown keys are errors, not silently ignored knobs, and a number is
    finite (`.inf` or `.nan` in YAML would train or sample into NaN weights with exit code 0)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


# Seeds reach numpy's and torch's generators, which take at most 32 bits (numpy) on every path.
MAX_SEED = 2**32 - 1


def check_name(value: str, what: str) -> str:
    """A name that becomes part of a path (adapters/NAME, runs/NAME-HASH): one plain file name."""
    if not value or value.startswith(".") or any(ch in "/\\" or ord(ch) < 32 for ch in value) or len(value) > 100:
        raise ValueError(
            f"{what} '{value[:40]}' becomes a folder name: use up to 100 characters without "
            "'/', '\\' or control characters, not starting with '.'"
        )
    return value


def load_config(cls: type[M], path: str | Path | None, overrides: dict[str, Any] | None = None) -> M:
    """Read `path` (or nothing: all defaults), apply dotted overrides, validate into `cls`."""
    source = str(path) if path is not None else "<defaults>"
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{source}: file not found; check the path")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{source}: not UTF-8 text (byte {exc.start}); save the file as UTF-8") from None
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read ({exc.strerror or type(exc).__name__}); check the path") from None
        except RecursionError:
            raise ConfigError(f"{source}: nested too deeply to read; flatten the YAML") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or "invalid YAML"
            raise ConfigError(f"{source}:{where}: {problem}; fix the YAML syntax") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{source}: expected a mapping of fields at the top level, got {type(loaded).__name__}")
        raw = loaded
    for dotted, value in (overrides or {}).items():
        set_dotted(raw, dotted, value)
    return validate(cls, raw, source)


def validate(cls: type[M], raw: dict[str, Any], source: str) -> M:
    try:
        return cls.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(describe_error(cls, exc, source)) from None


def set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = raw
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[keys[-1]] = value


def parse_set_option(text: str) -> tuple[str, Any]:
    """`--set training.epochs=3` → ("training.epochs", 3); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"--set {text}: expected FIELD=VALUE, for example --set training.epochs=3")
    key, value = text.split("=", 1)
    try:
        parsed = yaml.safe_load(value) if value != "" else ""
    except yaml.YAMLError:
        parsed = value
    return key.strip(), parsed


# Names users copy from transformers/peft/TRL configs → this config's field of the same meaning.
# Spelling similarity alone gets these wrong (e.g. `rank` is closer to `rank_pattern` than to `r`).
_ALIASES = {
    "rank": "r",
    "lora_r": "r",
    "lora_alpha": "alpha",
    "lora_dropout": "dropout",
    "lr": "learning_rate",
    "num_train_epochs": "epochs",
    "num_epochs": "epochs",
    "per_device_train_batch_size": "batch_size",
    "gradient_accumulation_steps": "gradient_accumulation",
    "lr_scheduler_type": "scheduler",
    "optim": "optimizer",
    "max_seq_length": "max_length",
}


def describe_error(cls: type[BaseModel], exc: ValidationError, source: str) -> str:
    """One line: file, field path, what was expected (and the nearest valid name)."""
    err = exc.errors()[0]
    loc = [str(part) for part in err["loc"]]
    field = ".".join(loc) or "<top level>"
    kind = err["type"]
    if kind == "extra_forbidden":
        valid = _field_names_at(cls, loc[:-1])
        alias = _ALIASES.get(loc[-1])
        close = [alias] if alias in valid else difflib.get_close_matches(loc[-1], valid, n=1, cutoff=0.5)
        hint = f"did you mean '{close[0]}'?" if close else f"valid fields: {', '.join(sorted(valid))}"
        return f"{source}: unknown field '{field}'; {hint}"
    if kind == "missing":
        return f"{source}: missing required field '{field}'; add it"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    got = err.get("input")
    shown = "" if isinstance(got, (dict, list)) or got is None else f" (got {got!r})"
    extra = f" [{len(exc.errors())} errors; this is the first]" if len(exc.errors()) > 1 else ""
    return f"{source}: field '{field}': {msg}{shown}{extra}"


def _field_names_at(cls: type[BaseModel], loc: list[str]) -> list[str]:
    model: Any = cls
    for part in loc:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
        info = model.model_fields.get(part)
        if info is None:
            return []
        model = _model_in(info.annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def drop_defaults(section: dict, defaults: dict) -> dict:
    """A dumped config section without the fields of `defaults` that hold their default, in place: what
    names a run (a run id, a sweep's recorded settings) stays as it was before those fields existed."""
    for key, default in defaults.items():
        if key in section and section[key] == default:
            del section[key]
    return section
