"""Suite YAML: what to evaluate (dataset, prompt, generation, metrics) and on which models."""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import Field, ValidationInfo, field_validator

from harness.config.generation import GenerationSettings, expand_grid
from harness.config.loader import MAX_SEED, Strict, check_name
from harness.config.model import Quantization
from harness.errors import ConfigError


class DatasetSettings(Strict):
    # A path, a hub id or builtin:NAME. When `path_env` names a set environment variable, it wins.
    path: str | None = None
    path_env: str | None = None
    format: Literal["auto", "korquad", "squad", "jsonl", "csv", "hub"] = "auto"
    split: str = "validation"
    fields: dict[str, str] = Field(default_factory=dict)
    limit: int | None = Field(None, gt=0)
    seed: int = Field(0, ge=0, le=MAX_SEED)


class FewShot(Strict):
    k: int = Field(0, ge=0)
    # Where the examples come from; default: the suite's own dataset (the sample itself is excluded).
    path: str | None = None
    split: str = "train"
    seed: int = Field(1234, ge=0, le=MAX_SEED)
    separator: str = "\n\n"


class PromptSettings(Strict):
    template: str = "qa-ko"
    text: str | None = Field(None, description="inline jinja2 prompt; overrides the template's prompt")
    chat: bool = Field(False, description="wrap the prompt in the model's chat template")
    system: str | None = None
    fewshot: FewShot = Field(default_factory=FewShot)
    overflow: Literal["truncate", "skip", "error"] = Field(
        "truncate",
        description="a prompt longer than the model's context less max_new_tokens: cut "
        "truncate_field from the left (truncate), leave the sample out (skip), or stop the run (error)",
    )
    truncate_field: str | None = Field(
        None, description="the field truncate cuts; default: context (qa), document (summarization)"
    )


class PerplexitySettings(Strict):
    field: str = "text"
    context_length: int = Field(512, gt=1)
    stride: int = Field(256, gt=0)


class ModelsSettings(Strict):
    base: str = "tiny:llama-ko"
    quantization: Quantization = Field(default_factory=Quantization)
    # name -> adapter directory
    adapters: dict[str, str] = Field(default_factory=dict)
    include_base: bool = True
    # "single": the whole base on one device (each process's own GPU under accelerate launch);
    # "auto": one process spreads a base too large for one GPU over the visible GPUs.
    device_map: Literal["single", "auto"] = "single"
    # with device_map auto: the most each GPU may hold, e.g. "70GiB" (None: accelerate's own estimate)
    max_memory_per_gpu: str | None = None

    @field_validator("adapters")
    @classmethod
    def _names(cls, value):
        for name in value:
            if name == "base" or not name or "/" in name:
                raise ValueError(f"adapter name '{name}' is reserved or invalid; use a plain name other than 'base'")
            check_name(name, "adapter name")
        return value


class BootstrapSettings(Strict):
    resamples: int = Field(1000, gt=0, le=1_000_000)
    seed: int = Field(0, ge=0, le=MAX_SEED)
    confidence: float = Field(0.95, gt=0, lt=1)
    # Every metric of every column is compared with the base at once: holm adjusts their p-values
    # together before a delta is marked improved or regressed; none marks each on its own.
    correction: Literal["holm", "none"] = "holm"


MetricEntry = Union[str, dict[str, Any]]  # noqa: UP007


class SuiteConfig(Strict):
    name: str
    task: str
    description: str = ""
    dataset: DatasetSettings = Field(default_factory=DatasetSettings)
    prompt: PromptSettings = Field(default_factory=PromptSettings)
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    # Decoding variants compared as extra columns: generation field -> values, e.g.
    # {repetition_penalty: [1.0, 1.15]}; every model runs every combination.
    generation_grid: dict[str, list[Any]] = Field(default_factory=dict)
    perplexity: PerplexitySettings = Field(default_factory=PerplexitySettings)
    # Names, or {name: rouge1, tokenizer: mecab}; empty: the task's defaults.
    metrics: list[MetricEntry] = Field(default_factory=list)
    models: ModelsSettings = Field(default_factory=ModelsSettings)
    batch_size: int | Literal["auto"] = "auto"
    # fast: weights dequantized once, adapters kept unmerged, static-cache decoding (CUDA graphs on
    # a GPU); plain: the 4-bit base with peft adapters and transformers' generate; auto: fast
    # where it fits in memory, else plain, saying so.
    engine: Literal["auto", "fast", "plain"] = "auto"
    # Re-run this many samples per model on the plain path (batch 1) and record how many agree.
    verify: int = Field(0, ge=0)
    bootstrap: BootstrapSettings = Field(default_factory=BootstrapSettings)

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value):
        return check_name(value, "suite name")

    @field_validator("generation_grid")
    @classmethod
    def _grid(cls, value, info: ValidationInfo):
        generation = info.data.get("generation")
        if value and generation is not None:
            try:
                expand_grid(generation, value, "generation_grid")
            except ConfigError as exc:
                raise ValueError(str(exc).removeprefix("generation_grid: ")) from None
        return value

    @field_validator("batch_size")
    @classmethod
    def _positive(cls, value):
        if isinstance(value, int) and value <= 0:
            raise ValueError("expected a positive integer or 'auto'")
        return value
