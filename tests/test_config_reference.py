"""docs/configuration.md is the config models rendered: it says what validation accepts."""

from __future__ import annotations

from pathlib import Path

from harness.config import SuiteConfig, TrainConfig
from harness.config.reference import COMMAND, render

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_the_reference_is_current():
    assert REFERENCE.read_text(encoding="utf-8") == render(), f"docs/configuration.md is stale: run `{COMMAND}`"


def _fields(model, prefix=""):
    for name, info in model.model_fields.items():
        sub = info.annotation
        if isinstance(sub, type) and hasattr(sub, "model_fields"):
            yield from _fields(sub, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", info


def test_every_field_is_described_and_listed():
    text = render()
    for model in (TrainConfig, SuiteConfig):
        for path, info in _fields(model):
            assert info.description, f"{model.__name__}.{path} has no description"
            assert f"| `{path}` |" in text, path
