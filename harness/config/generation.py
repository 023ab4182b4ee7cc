"""Generation settings: one definition shared by eval suites, generate and chat.

`harness generate` and `harness chat` build their command-line flags and `/set` fields from
`GenerationSettings.model_fields`, and a grid (`--compare`, a suite's `generation_grid`)
expands into variants validated through the same model, so names, defaults and errors agree.
"""

from __future__ import annotations

import difflib
import itertools
import json
from dataclasses import dataclass
from typing import Any

from pydantic import Field, ValidationError, model_validator

from harness.config.loader import MAX_SEED, Strict, describe_error
from harness.errors import ConfigError


class GenerationSettings(Strict):
    max_new_tokens: int = Field(64, gt=0, description="most tokens generated per answer")
    min_new_tokens: int = Field(0, ge=0, description="fewest tokens generated before eos may end the answer")
    do_sample: bool = Field(False, description="sample (with temperature, top_p, top_k) instead of greedy decoding")
    temperature: float = Field(1.0, gt=0, description="sampling temperature (only with do_sample)")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling mass (only with do_sample)")
    top_k: int = Field(50, ge=0, description="sample among the k likeliest tokens (only with do_sample)")
    repetition_penalty: float = Field(1.0, gt=0, description="penalise tokens already present (1.0: off)")
    no_repeat_ngram_size: int = Field(0, ge=0, description="forbid repeating n-grams of this size (0: off)")
    num_beams: int = Field(1, gt=0, le=64, description="beam search width (1: no beam search)")
    # The output is cut at the first of these; generation also stops there.
    stop: list[str] = Field(default_factory=list, description="stop string: cuts the output and ends generation")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="random seed for sampling")

    @model_validator(mode="after")
    def _min_below_max(self):
        if self.min_new_tokens > self.max_new_tokens:
            raise ValueError(f"min_new_tokens ({self.min_new_tokens}) exceeds max_new_tokens ({self.max_new_tokens})")
        # Logits divided by a temperature this small overflow to inf, and sampling from inf fails.
        if self.do_sample and self.temperature < MIN_SAMPLING_TEMPERATURE:
            raise ValueError(
                f"temperature {self.temperature:g} is too small to sample with (at least "
                f"{MIN_SAMPLING_TEMPERATURE:g}); for the likeliest tokens set do_sample false"
            )
        return self


MIN_SAMPLING_TEMPERATURE = 1e-3


FIELDS = tuple(GenerationSettings.model_fields)


def check_field(name: str, where: str) -> None:
    """A one-line error naming `name` and the valid generation fields when it is not one."""
    if name in FIELDS:
        return
    close = difflib.get_close_matches(name, FIELDS, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise ConfigError(f"{where}: '{name}' is not a generation field; {hint}valid fields: {', '.join(FIELDS)}")


def with_overrides(settings: GenerationSettings, overrides: dict[str, Any], source: str) -> GenerationSettings:
    """`settings` with `overrides` applied, validated as a whole (same one-line errors as a suite)."""
    for name in overrides:
        check_field(name, source)
    raw = {**settings.model_dump(), **overrides}
    try:
        return GenerationSettings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(describe_error(GenerationSettings, exc, source)) from None


def format_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


@dataclass(frozen=True)
class Variant:
    """One point of a generation grid: the overrides that define it and the settings they give."""

    overrides: dict[str, Any]
    settings: GenerationSettings

    @property
    def name(self) -> str:
        """`repetition_penalty=1.15,temperature=0.7`; empty for the default settings."""
        return ",".join(f"{k}={format_value(v)}" for k, v in self.overrides.items())

    def label(self, model: str) -> str:
        """`base@repetition_penalty=1.15`; just the model name without a grid."""
        return f"{model}@{self.name}" if self.overrides else model


def expand_grid(settings: GenerationSettings, grid: dict[str, list[Any]], source: str) -> list[Variant]:
    """Every combination of the grid's values (first field varies slowest), each validated."""
    if not grid:
        return [Variant({}, settings)]
    for name, values in grid.items():
        check_field(name, source)
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{source}: field '{name}' needs a non-empty list of values, e.g. {name}: [1.0, 1.15]")
    variants = []
    for combo in itertools.product(*grid.values()):
        overrides = dict(zip(grid, combo))
        variants.append(Variant(overrides, with_overrides(settings, overrides, source)))
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}: a value is given twice; every variant must differ")
    return variants
