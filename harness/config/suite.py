"""Suite YAML: what to evaluate (dataset, prompt, generation, metrics) and on which models."""

from __future__ import annotations

import re
from typing import Any, Literal, Union

from pydantic import Field, ValidationInfo, field_validator, model_validator

from harness.config.choice import ChoiceSettings
from harness.config.data import ReaderSettings
from harness.config.generation import GenerationSettings, expand_grid
from harness.config.loader import MAX_SEED, Strict, check_name
from harness.config.model import Quantization
from harness.errors import ConfigError


class DatasetSettings(ReaderSettings):
    path: str | None = Field(None, description="a path, hub id or `builtin:NAME`")
    path_env: str | None = Field(
        None, description="an environment variable whose value, when set, wins over `path` (e.g. `KORQUAD_DEV`)"
    )
    split: str = Field("validation", description="the split to evaluate (hub datasets, `save_to_disk` folders)")
    fields: dict[str, str] = Field(
        default_factory=dict, description="template field → dataset column, e.g. `{question: q}`"
    )
    limit: int | None = Field(None, gt=0, description="evaluate this many examples, drawn as `sample` says")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="seed of the `limit` sample")
    where: str | None = Field(
        None,
        description="a jinja2 expression over an example's fields; only examples where it is true are read "
        "(before `limit`), e.g. `'economy' in id|lower` (lm-evaluation-harness's process_docs filters)",
    )


class FewShot(Strict):
    k: int = Field(0, ge=0, description="examples put before each prompt (never the sample itself)")
    path: str | None = Field(None, description="where the examples come from; default: the suite's own dataset")
    split: str = Field("train", description="the split the examples come from (hub datasets)")
    seed: int = Field(1234, ge=0, le=MAX_SEED, description="seed of the examples' draw")
    separator: str = Field("\n\n", description="text between the examples and the prompt")


class PromptSettings(Strict):
    template: str = Field("qa-ko", description="a built-in template name (as in train) or a template file")
    text: str | None = Field(None, description="inline jinja2 prompt; overrides the template's prompt")
    chat: bool = Field(False, description="wrap the prompt in the model's chat template")
    system: str | None = Field(None, description="a system message for the chat template")
    fewshot: FewShot = Field(default_factory=FewShot, description="few-shot examples")
    overflow: Literal["truncate", "skip", "error"] = Field(
        "truncate",
        description="a prompt longer than the model's context less max_new_tokens: cut "
        "truncate_field from the left (truncate), leave the sample out (skip), or stop the run (error)",
    )
    truncate_field: str | None = Field(
        None, description="the field truncate cuts; default: context (qa), document (summarization)"
    )


class PerplexitySettings(Strict):
    field: str = Field("text", description="the dataset column holding each document")
    source_field: str | None = Field(
        None,
        description="a column each document is conditioned on (its perplexity is that of the text given it): "
        "an encoder-decoder's encoder input (without it, an empty input), unscored context before the text "
        "on a decoder-only model",
    )
    context_length: int = Field(512, gt=1, description="tokens in each sliding window")
    stride: int = Field(256, gt=0, description="tokens the window moves by; only the new tokens are scored")


class ModelsSettings(Strict):
    base: str = Field("tiny:llama-ko", description="hub id, local directory, or a built-in `tiny:` model")
    quantization: Quantization = Field(default_factory=Quantization, description="how the base is loaded")
    adapters: dict[str, str] = Field(default_factory=dict, description="adapter name → adapter directory")
    include_base: bool = Field(True, description="score the base itself as a column")
    device_map: Literal["single", "auto"] = Field(
        "single",
        description="`single`: the whole base on one device (each process's own GPU under accelerate launch); "
        "`auto`: one process spreads a base too large for one GPU over the visible GPUs",
    )
    max_memory_per_gpu: str | None = Field(
        None, description="with device_map auto: the most each GPU may hold, e.g. `70GiB` (null: accelerate's estimate)"
    )

    @field_validator("adapters")
    @classmethod
    def _names(cls, value):
        for name in value:
            if name == "base" or not name or "/" in name:
                raise ValueError(f"adapter name '{name}' is reserved or invalid; use a plain name other than 'base'")
            check_name(name, "adapter name")
        return value


class BootstrapSettings(Strict):
    resamples: int = Field(1000, gt=0, le=1_000_000, description="bootstrap resamples per interval")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="seed of the resamples")
    confidence: float = Field(0.95, gt=0, lt=1, description="confidence level of every interval")
    # Every metric of every column is compared with the base at once.
    correction: Literal["holm", "none"] = Field(
        "holm",
        description="`holm`: ▲/▼ only for deltas whose p-value survives Holm's correction over all of the "
        "run's deltas; `none`: each delta on its own",
    )


MetricEntry = Union[str, dict[str, Any]]  # noqa: UP007


class AnswerFilter(Strict):
    """One step of answer extraction (lm-evaluation-harness's `filter_list` steps): the steps run in
    order on the model's output, and the last one's text is what the metrics score."""

    function: Literal["regex", "first_line", "strip", "lowercase"] = Field(
        description="`regex`: the first match of `pattern` (its `group`); `first_line`: the text up to the first "
        "line break; `strip`: without surrounding whitespace; `lowercase`: lower-cased"
    )
    pattern: str | None = Field(None, description="regex: a Python regular expression searched for in the text")
    group: int = Field(0, ge=0, description="regex: the group of the first match taken (0: the whole match)")
    fallback: str | None = Field(
        None, description="regex: the answer when nothing matches (null: the text as it came in)"
    )

    @model_validator(mode="after")
    def _regex(self):
        if self.function != "regex":
            if self.pattern is not None or self.fallback is not None or self.group:
                raise ValueError(f"'{self.function}' takes no pattern, group or fallback; they belong to 'regex'")
            return self
        if self.pattern is None:
            raise ValueError("regex needs a 'pattern', e.g. {function: regex, pattern: '답: (.*)', group: 1}")
        try:
            compiled = re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"pattern {self.pattern!r} is not a valid regular expression: {exc}") from None
        if self.group > compiled.groups:
            raise ValueError(f"group {self.group}: pattern {self.pattern!r} has {compiled.groups} group(s)")
        return self


class SuiteConfig(Strict):
    name: str = Field(description="the suite's name; part of the run directory's name")
    task: str = Field(description="the task kind: `qa`, `summarization`, `perplexity` or `choice` (docs/tasks.md)")
    description: str = Field("", description="free text about the suite, kept in the run's config.json")
    dataset: DatasetSettings = Field(default_factory=DatasetSettings, description="what to evaluate on")
    prompt: PromptSettings = Field(default_factory=PromptSettings, description="how each sample becomes a prompt")
    generation: GenerationSettings = Field(
        default_factory=GenerationSettings, description="decoding settings (also `harness generate`'s flags)"
    )
    generation_grid: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="generation field → list of values, e.g. `{repetition_penalty: [1.0, 1.15]}`; every "
        "combination runs for every model as a column `MODEL@FIELD=VALUE`, deltas against `base` at the first values",
    )
    perplexity: PerplexitySettings = Field(
        default_factory=PerplexitySettings, description="the perplexity task's windows"
    )
    choice: ChoiceSettings = Field(
        default_factory=ChoiceSettings, description="the choice task's context, choices and right answer"
    )
    metrics: list[MetricEntry] = Field(
        default_factory=list,
        description="names, or `{name: rouge1, tokenizer: mecab}` (see docs/metrics.md); empty: the task's defaults",
    )
    filters: list[AnswerFilter] = Field(
        default_factory=list,
        description="answer extraction: steps applied in order to each output before scoring, e.g. "
        "`[{function: regex, pattern: '답: (.*)', group: 1}, {function: strip}]`; empty: the task's own "
        "(qa: the first line, stripped; summarization: stripped)",
    )
    models: ModelsSettings = Field(default_factory=ModelsSettings, description="the base and its adapters")
    batch_size: int | Literal["auto"] = Field(
        "auto",
        description="generation batch (auto: from free GPU memory per batch with the fast engine, else from "
        "the hardware)",
    )
    engine: Literal["auto", "fast", "plain"] = Field(
        "auto",
        description="`fast`: the base dequantized once, adapters kept unmerged, static-cache decoding (CUDA graphs on a GPU); `plain`: "
        "the 4-bit base with peft adapters and transformers' generate; `auto`: fast where it fits, else plain",
    )
    verify: int = Field(
        0, ge=0, description="samples per model re-run on the plain path (batch 1); agreement goes to results.json"
    )
    bootstrap: BootstrapSettings = Field(
        default_factory=BootstrapSettings, description="confidence intervals and deltas"
    )

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
