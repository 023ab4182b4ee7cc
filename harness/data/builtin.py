"""Datasets and texts the project ships (harness/data/assets), addressed as `builtin:NAME`."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from harness.errors import DataError

BUILTIN_PREFIX = "builtin:"


def assets_dir() -> Path:
    return Path(str(resources.files("harness.data") / "assets"))


def builtin_names() -> list[str]:
    return sorted(p.stem for p in assets_dir().iterdir() if p.suffix in {".json", ".jsonl", ".csv"})


def resolve_builtin(ref: str) -> Path:
    name = ref[len(BUILTIN_PREFIX) :]
    for suffix in (".json", ".jsonl", ".csv"):
        candidate = assets_dir() / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    raise DataError(f"{ref}: no built-in dataset of that name; choose one of: {', '.join(builtin_names())}")
