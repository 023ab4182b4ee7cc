"""`harness train CONFIG --sweep FIELD=V1,V2,...`: the points of a sweep, each one the config with the
point's values set, all validated before the first one trains.

Several `--sweep` options make a grid (the first field varies slowest). Values are read as YAML, as
`--set` reads them. Each point trains into its own directory under the config's output_dir (the sweep
directory), named after the point as it was written: `r=8`, or `r=8,learning_rate=1e-4` in a grid.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.config import TrainConfig, load_config
from harness.config.data import drop_reader_defaults
from harness.config.train import drop_selection_defaults
from harness.errors import ConfigError

# The sweep names its points' directories and adapters itself.
UNSWEPT = ("name", "output_dir")
MAX_NAME = 80


@dataclass
class SweepPoint:
    name: str
    values: dict[str, Any]  # field → the value as the validated config holds it (JSON)
    config: TrainConfig


@dataclass
class Sweep:
    source: str
    directory: Path
    fields: dict[str, list[Any]]  # field → its values as validated, in the order given
    points: list[SweepPoint]
    settings: dict  # the config every point shares, resolved (for --resume to check it is the same)


def parse_sweep_option(text: str) -> tuple[str, list[tuple[str, Any]]]:
    """`lora.r=4,8,16` → ("lora.r", [("4", 4), ("8", 8), ("16", 16)]): each value as written and as YAML
    reads it. Commas inside [...] or {...} belong to the value (`lora.target_modules=[q_proj,v_proj],all-linear`)."""
    field, sep, rest = text.partition("=")
    field = field.strip()
    if not sep or not field or not rest.strip():
        raise ConfigError(f"--sweep {text}: expected FIELD=V1,V2,..., e.g. --sweep lora.r=4,8,16")
    if field in UNSWEPT:
        raise ConfigError(f"--sweep {text}: '{field}' cannot be swept; the sweep names each point's directory itself")
    values = []
    for raw in _split_values(rest):
        raw = raw.strip()
        if not raw:
            raise ConfigError(f"--sweep {text}: an empty value; separate the values with single commas")
        try:
            values.append((raw, yaml.safe_load(raw)))
        except yaml.YAMLError:
            values.append((raw, raw))
    return field, values


def _split_values(text: str) -> list[str]:
    parts, depth, current = [], 0, []
    for ch in text:
        depth += (ch in "[{") - (ch in "]}")
        if ch == "," and depth <= 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def plan_sweep(source: str, overrides: dict[str, Any], options: list[str]) -> Sweep:
    """Every point's config, validated; a bad value is a ConfigError naming it before anything trains."""
    grid: dict[str, list[tuple[str, Any]]] = {}
    for text in options:
        field, values = parse_sweep_option(text)
        if field in grid:
            raise ConfigError(f"--sweep {text}: field '{field}' is given twice; list all its values in one --sweep")
        if field in overrides:
            raise ConfigError(f"--sweep {text}: '{field}' is also given with --set; drop one of them")
        grid[field] = values
    shared = load_config(TrainConfig, source, overrides)
    directory = Path(shared.output_dir)
    fields = {field: _validated_values(source, overrides, field, values) for field, values in grid.items()}
    labels = _field_labels(list(grid))
    points = [
        _point(source, overrides, shared, directory, dict(zip(grid, combo)), labels)
        for combo in itertools.product(*grid.values())
    ]
    settings = shared.model_dump(mode="json", exclude={"name", "output_dir"})
    # sweeps recorded before these fields existed still resume
    drop_reader_defaults(settings["data"])
    drop_selection_defaults(settings["training"])
    for field in grid:  # the shared config's own value of a swept field trains nothing
        *parents, last = field.split(".")
        node = _dotted(settings, ".".join(parents)) if parents else settings
        if isinstance(node, dict):
            node.pop(last, None)
    return Sweep(source, directory, fields, points, settings)


def _validated_values(source: str, overrides: dict, field: str, values: list[tuple[str, Any]]) -> list[Any]:
    """The field's values as the config holds them, each checked on its own first, so an error names the
    value at fault rather than a point of the grid."""
    validated: list[Any] = []
    for raw, value in values:
        try:
            config = load_config(TrainConfig, source, {**overrides, field: value})
        except ConfigError as exc:
            raise ConfigError(f"--sweep {field}={raw}: {exc}") from None
        held = _dotted(config.model_dump(mode="json"), field)
        if held in validated:  # `4,4.0`: the same adapter trained twice
            raise ConfigError(
                f"--sweep {field}={raw}: the same value as an earlier one ({held!r}); give each value once"
            )
        validated.append(held)
    return validated


def _point(source, overrides, shared: TrainConfig, directory: Path, combo: dict, labels: dict) -> SweepPoint:
    name = point_name({labels[field]: raw for field, (raw, _value) in combo.items()})
    point_overrides = {
        **overrides,
        **{field: value for field, (_raw, value) in combo.items()},
        "name": f"{shared.name}-{name}"[:100],
        "output_dir": str(directory / name),
    }
    try:
        config = load_config(TrainConfig, source, point_overrides)
    except ConfigError as exc:
        raise ConfigError(f"--sweep point {name}: {exc}") from None
    dumped = config.model_dump(mode="json")
    return SweepPoint(name, {field: _dotted(dumped, field) for field in combo}, config)


def _dotted(data: dict, field: str) -> Any:
    node: Any = data
    for key in field.split("."):
        node = node.get(key) if isinstance(node, dict) else None
    return node


def _field_labels(fields: list[str]) -> dict[str, str]:
    """How a field appears in point names: its last part (`r` for lora.r) unless two fields share it."""
    last = [f.rsplit(".", 1)[-1] for f in fields]
    return {f: (short if last.count(short) == 1 else f) for f, short in zip(fields, last)}


def point_name(values: dict[str, str]) -> str:
    """`{"r": "8", "alpha": "16"}` → `r=8,alpha=16`, made a safe folder and adapter name: other characters
    become `_` and then a hash of the original keeps two points apart; a long name is cut likewise."""
    name = ",".join(f"{label}={raw}" for label, raw in values.items())
    safe = "".join(ch if ch.isalnum() or ch in "._+-=," else "_" for ch in name)
    if safe != name or len(safe) > MAX_NAME:
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        safe = f"{safe[: MAX_NAME - 9]}-{digest}"
    return safe
