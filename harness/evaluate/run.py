"""`harness eval`: one base load, every adapter attached, each model scored on the suite.

plan (dataset → load base (4-bit) → attach adapters → build prompts and scorers → columns) → for each
model × variant: resume matching records, generate the rest (appending records) → verify → aggregate
with intervals and paired deltas → results.json.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.config.suite import SuiteConfig
from harness.data.readers import Dataset
from harness.engine.weights import choose_weights
from harness.evaluate.columns import run_columns
from harness.evaluate.plan import (
    EvalPlan,
    Sources,
    build_requests,
    build_scorers,
    check_scoring,
    fewshot_pool,
    model_names,
    plan_columns,
    resolve_dataset,
    run_id_for,
    sample_positions,
)
from harness.evaluate.results import build_results, dataset_info, models_info
from harness.evaluate.verify import verify_columns
from harness.model.adapters import ModelSet, attach_adapters
from harness.model.full import load_full_models
from harness.model.loading import load_base
from harness.runs.store import RunDir
from harness.runtime.console import human_bytes, keep_log_in, quiet
from harness.runtime.distributed import Dist
from harness.runtime.env import detect, eval_batch_size
from harness.tasks import get_task
from harness.tasks.base import Task

logger = logging.getLogger(__name__)


@dataclass
class EvalResult:
    run_dir: Path
    results: dict


def run_eval(
    suite: SuiteConfig,
    source: str,
    out_root: str | Path = "runs",
    run_id: str | None = None,
    log: Callable[[str], None] | None = None,
    progress_bars: bool = True,
    sources: Sources | None = None,
    models: ModelSet | None = None,
    data: SuiteData | None = None,
) -> EvalResult:
    """Evaluate the suite's models; `log` receives the progress lines (default: this module's logger).
    `sources`: columns beyond the suite's (a sweep's adapters, a run's checkpoints, full models).
    `models`: a base already loaded with (at least) the suite's adapters attached, shared by several
    suites (harness.evaluate.suites); `data`: the suite's `read_suite`, when read beforehand."""
    sources = sources or Sources()
    plan = plan_eval(suite, source, out_root, run_id, log or logger.info, progress_bars, sources, models, data)
    records, throughput = run_columns(plan)
    verified = verify_columns(plan, records) if suite.verify and plan.dist.main else {}
    plan.dist.barrier()
    results = build_results(plan, records, throughput, verified)
    if plan.dist.main:
        plan.run.write_json("results.json", results)
    plan.dist.barrier()
    return EvalResult(run_dir=plan.run.path, results=results)


@dataclass
class SuiteData:
    """What an eval reads before the base loads, so that a mistake in it costs no model load."""

    task: Task
    dataset: Dataset
    fewshot: list[dict]  # the pool few-shot examples are drawn from


def read_suite(suite: SuiteConfig, source: str) -> SuiteData:
    """The suite's task, dataset and few-shot pool, with its metrics and filters checked on the data."""
    task = get_task(suite.task, where=f"{source}: field 'task'")
    dataset = resolve_dataset(suite, source)
    fewshot = fewshot_pool(suite, dataset, source, task)
    check_scoring(task, suite, dataset, source)
    return SuiteData(task, dataset, fewshot)


def plan_eval(
    suite: SuiteConfig,
    source: str,
    out_root,
    run_id,
    log,
    progress_bars: bool,
    sources: Sources,
    models: ModelSet | None = None,
    data: SuiteData | None = None,
) -> EvalPlan:
    """Everything checked and settled before the first sample is generated; the run directory made."""
    data = data or read_suite(suite, source)
    task, dataset = data.task, data.dataset
    env = detect()
    # Under `accelerate launch`, every rank loads its own copy and generates its share of the samples;
    # rank 0 merges the records and writes the run's JSON files. A world of one is the plain path.
    dist = Dist.current()
    models = models or load_models(suite, env, dist, sources)
    plan = EvalPlan(suite, source, task, dataset, env, dist, models, log, progress_bars, sources=sources)
    build_requests(plan, data.fewshot)
    build_scorers(plan)
    names = model_names(suite, source, list(sources.full))
    models.base_fingerprint(
        announce=lambda size: log(
            f"harness eval: reading the base's files once ({human_bytes(size)}) to key resumed records on its content"
        )
    )
    plan.identities = {name: models.identity(name) for name in names}
    plan_columns(plan, names)
    plan.run = RunDir(Path(out_root) / (run_id or run_id_for(suite, dataset, plan.identities))).create()
    keep_log_in(plan.run.path / (f"eval-rank{dist.rank}.log" if dist.active else "eval.log"))
    batch_size = suite.batch_size if suite.batch_size != "auto" else eval_batch_size(env)
    plan.engine, engine_note = choose_weights(models, suite.engine, f"{source}: field 'engine'")
    auto_batch = suite.batch_size == "auto" and plan.engine == "dense" and env.device == "cuda"
    plan.batch_size = None if auto_batch else batch_size
    if not dist.main:
        plan.log = quiet  # rank 0 speaks for the world
    plan.log(
        f"harness eval: {suite.name} ({task.kind}), {len(plan.requests)} samples × {len(plan.columns)} models "
        f"[{', '.join(plan.columns)}], batch {'auto' if auto_batch else batch_size}, "
        f"{env.device}/{models.base.compute_dtype}"
        + (f" × {dist.world} processes" if dist.active else "")
        + f" → {plan.run.path}"
    )
    plan.log(f"harness eval: {engine_note}")
    if dist.main:
        write_config(plan)
    sample_positions(plan)
    return plan


def load_models(suite: SuiteConfig, env, dist: Dist, sources: Sources, adapters: dict[str, str] | None = None):
    """The base (each rank its own copy) with every adapter attached (the suite's, or `adapters`), and
    each full model loaded."""
    base = load_base(
        suite.models.base,
        suite.models.quantization,
        env,
        local_rank=dist.local_rank,
        device_map=suite.models.device_map,
        max_memory_per_gpu=suite.models.max_memory_per_gpu,
    )
    models = attach_adapters(base, suite.models.adapters if adapters is None else adapters)
    models.full = load_full_models(sources.full, base, sources.full_quantization, env, dist.local_rank)
    return models


def write_config(plan: EvalPlan) -> None:
    """config.json (the resolved suite, dataset and models) and environment.json."""
    plan.run.write_json(
        "config.json",
        {
            "suite": plan.suite.model_dump(mode="json"),
            "source": plan.source,
            "dataset": dataset_info(plan.dataset),
            "models": models_info(plan.models, plan.columns),
            **({"sweep": plan.sources.sweep} if plan.sources.sweep else {}),
            **({"checkpoints": plan.sources.checkpoints} if plan.sources.checkpoints else {}),
        },
    )
    world = {"world_size": plan.dist.world} if plan.dist.active else {}
    plan.run.write_json("environment.json", {**plan.env.to_dict(), **world})
