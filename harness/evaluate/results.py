"""results.json: the columns' aggregates with intervals and paired deltas, and what produced them."""

from __future__ import annotations

import time

from harness import __version__
from harness.data.readers import Dataset
from harness.engine import fused
from harness.evaluate.checkpoints import best_checkpoint
from harness.evaluate.plan import Column, EvalPlan
from harness.metrics.aggregate import aggregate, repetition_summary
from harness.metrics.breakdown import breakdown


def build_results(
    plan: EvalPlan, records: dict[str, list[dict]], throughput: dict[str, dict], verified: dict[str, dict]
) -> dict:
    suite, b = plan.suite, plan.suite.bootstrap
    # Deltas: every column against the base at the suite's generation settings (the first grid value).
    base_column = plan.variants[0].label("base")
    settings = (base_column if base_column in records else None, b.resamples, b.seed, b.confidence, b.correction)
    results = aggregate(records, plan.scorers, *settings)
    if (subjects := breakdown(records, plan.scorers, *settings)) is not None:
        results["breakdown"] = subjects
    results.update(_description(plan, throughput))
    repetition = {column: summary for column, recs in records.items() if (summary := repetition_summary(recs))}
    if repetition:
        results["repetition"] = repetition
    if verified:
        results["verify"] = verified
    if len(plan.variants) > 1:
        results["generation_grid"] = suite.generation_grid
    sources = plan.sources
    if sources.sweep:
        results["sweep"] = sources.sweep
    if sources.checkpoints:
        best = best_checkpoint(sources.checkpoints, results["metrics"], results["metric_info"])
        results["checkpoints"] = {**sources.checkpoints, "best": best}
    if plan.dist.active:
        results["world_size"] = plan.dist.world
    return results


def _description(plan: EvalPlan, throughput: dict[str, dict]) -> dict:
    """What was evaluated, with what, how fast and where."""
    suite, env = plan.suite, plan.env
    return {
        "harness_version": __version__,
        "suite": suite.name,
        "task": plan.task.kind,
        "run_id": plan.run.path.name,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "dataset": dataset_info(plan.dataset),
        "models": models_info(plan.models, plan.columns),
        "generation": suite.generation.model_dump(mode="json"),
        "prompt": suite.prompt.model_dump(mode="json"),
        "n_samples": len(plan.requests),
        "throughput": throughput,
        "long_prompts": plan.overflow,
        "environment": {"device": env.device, "device_name": env.device_name, "versions": env.versions},
        "engine": plan.engine,
        "fused_kernels": suite.engine != "plain" and fused.available(plan.models.base.model),
    }


def dataset_info(dataset: Dataset) -> dict:
    return {
        "source": dataset.source,
        "path": dataset.path,
        "format": dataset.format,
        "sha256": dataset.sha256,
        "examples": len(dataset.examples),
    }


def models_info(models, columns: dict[str, Column]) -> list[dict]:
    """One entry per column: the model's description, with its generation variant when there is a grid."""
    return [
        {
            **_model_info(models, c.model),
            "name": c.label,
            **({"model": c.model, "variant": c.variant.overrides} if c.variant.overrides else {}),
        }
        for c in columns.values()
    ]


def _model_info(models, name: str) -> dict:
    if name == "base":
        return {
            "name": "base",
            "kind": "base",
            "ref": models.base.ref,
            "path": models.base.path,
            "sha256": models.base_fingerprint(),
            "quantization": models.base.quantization.model_dump(),
            "compute_dtype": models.base.compute_dtype,
        }
    if name in models.full:
        loaded = models.full[name].loaded
        return {
            "name": name,
            "kind": "model",
            "ref": loaded.ref,
            "path": loaded.path,
            "sha256": models.full[name].sha256,
            "quantization": loaded.quantization.model_dump(),
            "compute_dtype": loaded.compute_dtype,
        }
    a = models.adapters[name]
    record = a.train_record or {}
    return {
        "name": name,
        "kind": "adapter",
        "path": a.path,
        "sha256": a.sha256,
        "base": models.base.ref,
        "train_record": {
            k: record.get(k)
            for k in ("name", "base_model", "data", "history", "global_steps", "train_runtime_s", "config")
        }
        if record
        else None,
    }
