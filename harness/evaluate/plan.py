"""What an eval does, settled before anything is generated: the dataset, its prompts (requests), the
scorers, and the columns (every model × generation variant), checked so that a mistake fails early."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from harness.config.data import drop_reader_defaults
from harness.config.generation import Variant, expand_grid
from harness.config.suite import SuiteConfig
from harness.data.expressions import expression
from harness.data.readers import Dataset, load_dataset, reader_options, take
from harness.engine.model_info import context_length, encoder_decoder
from harness.errors import ConfigError, DataError
from harness.metrics.aggregate import Scorer
from harness.metrics.registry import auto_notes
from harness.model.adapters import ModelSet
from harness.runs.store import RunDir, content_key
from harness.runtime.distributed import Dist
from harness.runtime.env import Environment
from harness.tasks.base import Request, Task
from harness.tasks.long_prompts import overflow_counts


@dataclass(frozen=True)
class Column:
    """One column of the results: a model at one generation variant (without a grid, just the model)."""

    label: str
    model: str
    variant: Variant
    suite: SuiteConfig  # the suite with the variant's generation settings


@dataclass
class Sources:
    """Where columns beyond the suite's come from, as results.json describes them."""

    sweep: dict | None = None  # the training sweep the adapters come from (harness.evaluate.sweep)
    checkpoints: dict | None = None  # the training run they come from (harness.evaluate.checkpoints)
    full: dict[str, str] = field(default_factory=dict)  # full models by name (--model NAME=PATH)
    full_quantization: str = "none"  # how they load (harness.model.full)


@dataclass
class EvalPlan:
    """Everything the steps of an eval share; filled in, in order, by `harness.evaluate.run.plan_eval`."""

    suite: SuiteConfig
    source: str  # where the suite came from, for messages
    task: Task
    dataset: Dataset
    env: Environment
    dist: Dist
    models: ModelSet
    log: Callable[[str], None]
    progress_bars: bool = True
    requests: list[Request] = field(default_factory=list)
    overflow: dict = field(default_factory=dict)  # long prompts truncated or skipped (tasks.long_prompts)
    scorers: list[Scorer] = field(default_factory=list)
    identities: dict[str, dict] = field(default_factory=dict)
    variants: list[Variant] = field(default_factory=list)
    columns: dict[str, Column] = field(default_factory=dict)  # by label
    run: RunDir | None = None
    engine: str = "plain"
    batch_size: int | None = None  # None: the engine sizes the batches itself
    position: dict[str, int] = field(default_factory=dict)  # a sample's place in `requests`, by id
    sources: Sources = field(default_factory=lambda: Sources())


def resolve_dataset(suite: SuiteConfig, source: str) -> Dataset:
    d = suite.dataset
    path = d.path
    if d.path_env and os.environ.get(d.path_env):
        path = os.environ[d.path_env]
    if not path:
        hint = f" or set ${d.path_env}" if d.path_env else ""
        raise ConfigError(f"{source}: field 'dataset.path' is empty; pass --data PATH{hint}")
    limit = None if d.where else d.limit
    where = f"{source} dataset.path"
    dataset = load_dataset(path, d.format, d.split, d.fields, limit, d.seed, where=where, **reader_options(d))
    if d.where:
        dataset = _keep_where(dataset, d.where, d.limit, d.sample, d.seed)
    return dataset


def _keep_where(dataset: Dataset, condition: str, limit: int | None, sample: str, seed: int) -> Dataset:
    """The examples for which `dataset.where` is true, then `limit` of them."""
    test = expression(condition, "dataset.where")
    try:
        kept = [e for e in dataset.examples if test(e, f"dataset example '{e.get('id', '?')}'")]
    except DataError as exc:
        raise DataError(f"{dataset.source}: {exc}") from None
    if not kept:
        raise DataError(f"{dataset.source}: dataset.where {condition!r} keeps no example; check the expression")
    if limit is not None and limit < len(kept):
        kept = take(kept, limit, sample, seed)
    return replace(dataset, examples=kept)


def fewshot_pool(suite: SuiteConfig, dataset: Dataset, source: str, task: Task) -> list[dict]:
    """Where few-shot examples come from: `prompt.fewshot.path`, else the suite's own dataset (a choice
    task's: in full, at `prompt.fewshot.split` where the dataset has splits, as lm-evaluation-harness
    draws from its fewshot_split)."""
    f = suite.prompt.fewshot
    if not f.k:
        return []
    if f.path is not None:
        return load_dataset(
            f.path, "auto", f.split, suite.dataset.fields, None, f.seed, where=f"{source} prompt.fewshot.path"
        ).examples
    if task.kind != "choice":
        return dataset.examples
    d = suite.dataset
    split = f.split if dataset.format in ("hub", "disk") else d.split
    if split == d.split and (d.limit is None or len(dataset.examples) < d.limit):
        return dataset.examples
    whole = suite.model_copy(update={"dataset": d.model_copy(update={"split": split, "limit": None})})
    return resolve_dataset(whole, f"{source} prompt.fewshot").examples


def run_id_for(suite: SuiteConfig, dataset: Dataset, identities: dict[str, dict]) -> str:
    # An empty grid is left out so that runs of suites without one keep their ids.
    # How outputs are computed (engine, verify) is in every record's key, not in the run's name.
    settings = suite.model_dump(
        mode="json", exclude={"models", "engine", "verify"} | (set() if suite.generation_grid else {"generation_grid"})
    )
    # Likewise the long-prompt settings at their defaults: a truncated prompt changes its records' keys.
    if settings["prompt"]["overflow"] == "truncate" and settings["prompt"]["truncate_field"] is None:
        del settings["prompt"]["overflow"], settings["prompt"]["truncate_field"]
    drop_reader_defaults(settings["dataset"])
    if settings["bootstrap"]["correction"] == "holm":
        del settings["bootstrap"]["correction"]
    if not settings["filters"]:
        del settings["filters"]
    if settings["perplexity"]["source_field"] is None:
        del settings["perplexity"]["source_field"]
    if settings["dataset"]["where"] is None:
        del settings["dataset"]["where"]
    if suite.task != "choice":  # the section means nothing to other kinds; their runs keep their ids
        del settings["choice"]
    return f"{suite.name}-{content_key(settings, dataset.sha256, identities)[:10]}"


def build_requests(plan: EvalPlan, fewshot: list[dict]) -> None:
    """The prompts to answer; those longer than the model's context are truncated or skipped as the suite says."""
    suite, base = plan.suite, plan.models.base
    try:
        requests = plan.task.build_requests(
            suite,
            plan.dataset.examples,
            base.tokenizer,
            fewshot,
            context_length(base.model),
            encoder_decoder(base.model),
        )
    except DataError as exc:  # an example the prompt cannot be built from: name the file
        raise DataError(f"{plan.dataset.source}: {exc}") from None
    plan.overflow = overflow = overflow_counts(requests)
    plan.requests = [r for r in requests if not r.extra.get("skipped")]
    if overflow["truncated"] or overflow["skipped"]:
        plan.log(
            f"harness eval: {overflow['truncated']} prompts longer than the model's context truncated, "
            f"{overflow['skipped']} skipped (prompt.overflow: {suite.prompt.overflow})"
        )
    if not plan.requests:
        raise ConfigError(
            f"{plan.source}: every prompt is longer than the model's context; lower "
            "generation.max_new_tokens or shorten the prompt template"
        )


def check_scoring(task: Task, suite: SuiteConfig, dataset: Dataset, source: str) -> None:
    """The metrics and filters built from the dataset alone: a mistake in them stops the eval before the base loads."""
    try:
        task.check_scoring(suite, dataset.examples)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except DataError as exc:
        raise DataError(f"{dataset.source}: {exc}") from None


def build_scorers(plan: EvalPlan) -> None:
    try:
        plan.scorers = plan.task.scorers(plan.suite, [r.references for r in plan.requests])
    except ConfigError as exc:
        raise ConfigError(f"{plan.source}: {exc}") from None
    for note in auto_notes(plan.scorers):
        plan.log(note)


def model_names(suite: SuiteConfig, source: str, full: list[str]) -> list[str]:
    names = (["base"] if suite.models.include_base else []) + list(suite.models.adapters) + full
    if not names:
        raise ConfigError(f"{source}: nothing to evaluate; give an adapter or keep models.include_base")
    return names


def plan_columns(plan: EvalPlan, names: list[str]) -> None:
    """Every model × generation variant is one column; without a grid a column is just the model."""
    suite, source = plan.suite, plan.source
    if suite.generation_grid and plan.task.request_kind != "generation":
        raise ConfigError(f"{source}: field 'generation_grid': the {plan.task.kind} task generates nothing; remove it")
    plan.variants = expand_grid(suite.generation, suite.generation_grid, f"{source}: generation_grid")
    plan.columns = {
        variant.label(name): Column(
            variant.label(name),
            name,
            variant,
            suite.model_copy(update={"generation": variant.settings}) if variant.overrides else suite,
        )
        for name in names
        for variant in plan.variants
    }


def sample_positions(plan: EvalPlan) -> None:
    plan.position = {r.id: i for i, r in enumerate(plan.requests)}
    if len(plan.position) != len(plan.requests):
        raise ConfigError(f"{plan.dataset.source}: sample ids are not unique; give every example its own id")
