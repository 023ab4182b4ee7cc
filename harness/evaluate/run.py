"""`harness eval`: one base load, every adapter attached, each model scored on the suite.

resolve dataset → load base (4-bit) → attach adapters → build prompts → for each model:
reuse matching records, generate the rest (appending records) → aggregate with intervals
and paired deltas → results.json.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from harness import __version__
from harness.config.generation import expand_grid
from harness.config.suite import SuiteConfig
from harness.data.readers import Dataset, load_dataset
from harness.engine import fused
from harness.engine.weights import choose_weights
from harness.errors import ConfigError, DataError
from harness.evaluate.execute import run_task
from harness.metrics.aggregate import aggregate, repetition_summary, score_record
from harness.metrics.registry import auto_notes
from harness.runs.store import RunDir, content_key
from harness.runtime.distributed import Dist, TotalProgress
from harness.runtime.env import detect, eval_batch_size
from harness.tasks import get_task
from harness.tasks.long_prompts import overflow_counts


@dataclass
class EvalResult:
    run_dir: Path
    results: dict


def resolve_dataset(suite: SuiteConfig, source: str) -> Dataset:
    d = suite.dataset
    path = d.path
    if d.path_env and os.environ.get(d.path_env):
        path = os.environ[d.path_env]
    if not path:
        hint = f" or set ${d.path_env}" if d.path_env else ""
        raise ConfigError(f"{source}: field 'dataset.path' is empty; pass --data PATH{hint}")
    return load_dataset(path, d.format, d.split, d.fields, d.limit, d.seed, where=f"{source} dataset.path")


def run_id_for(suite: SuiteConfig, dataset: Dataset, identities: dict[str, dict]) -> str:
    # An empty grid is left out so that runs of suites without one keep their ids.
    # How outputs are computed (engine, verify) is in every record's key, not in the run's name.
    settings = suite.model_dump(
        mode="json", exclude={"models", "engine", "verify"} | (set() if suite.generation_grid else {"generation_grid"})
    )
    # Likewise the long-prompt settings at their defaults: a truncated prompt changes its records' keys.
    if settings["prompt"]["overflow"] == "truncate" and settings["prompt"]["truncate_field"] is None:
        del settings["prompt"]["overflow"], settings["prompt"]["truncate_field"]
    if settings["bootstrap"]["correction"] == "holm":
        del settings["bootstrap"]["correction"]
    return f"{suite.name}-{content_key(settings, dataset.sha256, identities)[:10]}"


def run_eval(
    suite: SuiteConfig,
    source: str,
    out_root: str | Path = "runs",
    run_id: str | None = None,
    log=print,
    progress_bars: bool = True,
) -> EvalResult:
    from tqdm.auto import tqdm

    from harness.engine.generation import context_length
    from harness.model.adapters import attach_adapters
    from harness.model.loading import load_base
    from harness.runs.tables import human_bytes
    from harness.runtime.console import keep_log_in, terminal

    task = get_task(suite.task, where=f"{source}: field 'task'")
    dataset = resolve_dataset(suite, source)
    fewshot_pool = _fewshot_pool(suite, dataset, source)
    env = detect()
    # Under `accelerate launch`, every rank loads its own copy and generates its share of the samples;
    # rank 0 merges the records and writes the run's JSON files. A world of one is the plain path.
    dist = Dist.current()
    base = load_base(
        suite.models.base,
        suite.models.quantization,
        env,
        local_rank=dist.local_rank,
        device_map=suite.models.device_map,
        max_memory_per_gpu=suite.models.max_memory_per_gpu,
    )
    models = attach_adapters(base, suite.models.adapters)
    try:
        requests = task.build_requests(
            suite, dataset.examples, base.tokenizer, fewshot_pool, context_length(base.model)
        )
    except DataError as exc:  # an example the prompt cannot be built from: name the file
        raise DataError(f"{dataset.source}: {exc}") from None
    overflow = overflow_counts(requests)
    requests = [r for r in requests if not r.extra.get("skipped")]
    if overflow["truncated"] or overflow["skipped"]:
        log(
            f"harness eval: {overflow['truncated']} prompts longer than the model's context truncated, "
            f"{overflow['skipped']} skipped (prompt.overflow: {suite.prompt.overflow})"
        )
    if not requests:
        raise ConfigError(
            f"{source}: every prompt is longer than the model's context; lower "
            "generation.max_new_tokens or shorten the prompt template"
        )
    try:
        scorers = task.scorers(suite, [r.references for r in requests])
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    for note in auto_notes(scorers):
        log(note)
    names = (["base"] if suite.models.include_base else []) + list(suite.models.adapters)
    if not names:
        raise ConfigError(f"{source}: nothing to evaluate; give an adapter or keep models.include_base")
    models.base_fingerprint(
        announce=lambda size: log(
            f"harness eval: reading the base's files once ({human_bytes(size)}) to key resumed records on its content"
        )
    )
    identities = {name: models.identity(name) for name in names}
    # Every model × generation variant is one column; without a grid a column is just the model.
    if suite.generation_grid and task.kind == "perplexity":
        raise ConfigError(f"{source}: field 'generation_grid': the perplexity task generates nothing; remove it")
    variants = expand_grid(suite.generation, suite.generation_grid, f"{source}: generation_grid")
    columns = {variant.label(name): (name, variant) for name in names for variant in variants}
    run = RunDir(Path(out_root) / (run_id or run_id_for(suite, dataset, identities))).create()
    keep_log_in(run.path / (f"eval-rank{dist.rank}.log" if dist.active else "eval.log"))
    batch_size = suite.batch_size if suite.batch_size != "auto" else eval_batch_size(env)
    engine, engine_note = choose_weights(models, suite.engine, f"{source}: field 'engine'")
    auto_batch = suite.batch_size == "auto" and engine == "dense" and env.device == "cuda"
    if not dist.main:
        log = _quiet
    log(
        f"harness eval: {suite.name} ({task.kind}), {len(requests)} samples × {len(columns)} models "
        f"[{', '.join(columns)}], batch {'auto' if auto_batch else batch_size}, {env.device}/{base.compute_dtype}"
        + (f" × {dist.world} processes" if dist.active else "")
        + f" → {run.path}"
    )
    log(f"harness eval: {engine_note}")
    if dist.main:
        run.write_json(
            "config.json",
            {
                "suite": suite.model_dump(mode="json"),
                "source": source,
                "dataset": _dataset_info(dataset),
                "models": _models_info(models, columns),
            },
        )
        run.write_json("environment.json", {**env.to_dict(), **({"world_size": dist.world} if dist.active else {})})

    position = {r.id: i for i, r in enumerate(requests)}
    if len(position) != len(requests):
        raise ConfigError(f"{dataset.source}: sample ids are not unique; give every example its own id")
    records: dict[str, list[dict]] = {}
    throughput: dict[str, dict] = {}
    verified: dict[str, dict] = {}
    column_suites = {
        column: suite.model_copy(update={"generation": variant.settings}) if variant.overrides else suite
        for column, (_name, variant) in columns.items()
    }
    # The fast engine's dequantized base serves every column; verification runs after it is
    # put back, on the plain 4-bit path.
    with contextlib.ExitStack() as dense:
        dense_entered = warmed = False
        for column, (name, variant) in columns.items():
            settings = {
                "task": task.kind,
                "generation": variant.settings.model_dump(mode="json"),
                "perplexity": suite.perplexity.model_dump(mode="json") if task.kind == "perplexity" else None,
                "engine": engine,
            }
            column_suite = column_suites[column]
            # The id is part of the key: two samples with the same prompt and references (KorQuAD dev
            # has such pairs) must each keep their own record.
            keys = [content_key(identities[name], settings, r.id, r.prompt, r.references) for r in requests]
            done = run.load_records(column)  # the merged file and every earlier rank's shard, whatever the world size
            for note in run.notes:
                log(f"harness eval: {note}")
            run.notes.clear()
            todo = [i for i, key in enumerate(keys) if key not in done]
            for key in set(keys) & done.keys():  # reused records are rescored: the suite's metrics may have changed
                done[key]["metrics"] = score_record(done[key], scorers)
            fresh: dict[str, dict] = {}
            dist.barrier()  # every rank has read the records before any rank appends new ones
            # A generative task deals whole batches to the ranks (`generation.generate`), so each sample
            # meets the rows and shapes of a single-process run; others take every world-th sample.
            dealt = dist.active and task.deals_batches
            mine = todo if dealt else dist.shard(todo)
            append, close = run.appender(column, dist.rank if dist.active else None)

            def on_record(record: dict, _keys=keys, _append=append, _fresh=fresh) -> None:
                record["key"] = _keys[position[record["id"]]]
                record["metrics"] = score_record(record, scorers)
                _fresh[record["key"]] = record
                _append(record)

            if mine and engine == "dense" and not dense_entered:  # once, for every column that has work
                swap_started = time.time()
                dense.enter_context(models.dense())
                dense_entered = True
                log(f"harness eval: base dequantized in {time.time() - swap_started:.1f} s")
            if mine and not warmed and suite.engine != "plain":
                warmed = True
                with models.use(name) as model:
                    if compiled := fused.warm_up(model):
                        log(f"harness eval: fused kernels compiled in {compiled:.1f} s")
            started = time.time()
            bar = tqdm(
                total=len(todo),
                desc=f"{column}",
                unit="sample",
                file=terminal(),
                disable=not progress_bars or not todo or not dist.main,
            )
            progress = (
                TotalProgress(bar, [run.records_file(column, r) for r in range(1, dist.world)]) if dist.active else bar
            )
            try:
                if mine:
                    with models.use(name) as model:
                        run_task(
                            task,
                            model,
                            base.tokenizer,
                            column_suite,
                            [requests[i] for i in mine],
                            None if auto_batch else batch_size,
                            on_record,
                            progress,
                            shard=dist if dealt else None,
                        )
                if dist.active:
                    progress.finish()
            finally:
                bar.close()
                close()
            if dist.active:  # every rank's new records, on every rank (the ranks' shard files stay until merged)
                for part in dist.all_gather(fresh):
                    fresh.update(part)
            wall = time.time() - started
            done.update(fresh)
            ordered = [done[key] for key in keys]
            if dist.main:
                run.write_records(column, ordered)
            dist.barrier()
            records[column] = ordered
            generated = sum(r.get("generated_tokens", 0) for r in fresh.values())
            throughput[column] = {
                "samples": len(todo),
                "reused": len(requests) - len(todo),
                "wall_s": round(wall, 3),
                "samples_per_s": round(len(todo) / wall, 3) if todo and wall > 0 else None,
                "generated_tokens_per_s": round(generated / wall, 2) if generated and wall > 0 else None,
            }

    if suite.verify and dist.main:
        for column, (name, _variant) in columns.items():
            verified[column] = _verify(
                task,
                models,
                name,
                column_suites[column],
                requests[: suite.verify],
                base.tokenizer,
                {r["id"]: r for r in records[column]},
                engine,
            )
            log(f"harness eval: verify {column}: {verified[column]['summary']}")
    dist.barrier()

    b = suite.bootstrap
    # Deltas: every column against the base at the suite's generation settings (the first grid value).
    base_column = variants[0].label("base")
    results = aggregate(
        records,
        scorers,
        base_column if base_column in records else None,
        b.resamples,
        b.seed,
        b.confidence,
        b.correction,
    )
    results.update(
        {
            "harness_version": __version__,
            "suite": suite.name,
            "task": task.kind,
            "run_id": run.path.name,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "dataset": _dataset_info(dataset),
            "models": _models_info(models, columns),
            "generation": suite.generation.model_dump(mode="json"),
            "prompt": suite.prompt.model_dump(mode="json"),
            "n_samples": len(requests),
            "throughput": throughput,
            "long_prompts": overflow,
            "environment": {"device": env.device, "device_name": env.device_name, "versions": env.versions},
            "engine": engine,
            "fused_kernels": suite.engine != "plain" and fused.available(base.model),
        }
    )
    repetition = {column: summary for column, recs in records.items() if (summary := repetition_summary(recs))}
    if repetition:
        results["repetition"] = repetition
    if verified:
        results["verify"] = verified
    if len(variants) > 1:
        results["generation_grid"] = suite.generation_grid
    if dist.active:
        results["world_size"] = dist.world
    if dist.main:
        run.write_json("results.json", results)
    dist.barrier()
    return EvalResult(run_dir=run.path, results=results)


def _verify(
    task, models, name: str, suite: SuiteConfig, requests: list, tokenizer, fast: dict[str, dict], engine: str
) -> dict:
    """Re-run `requests` on the plain path (4-bit base + peft adapter, transformers' generate,
    batch 1) and compare with what the run recorded: the evidence that the fast path computes the
    same model."""
    plain: dict[str, dict] = {}
    started = time.time()
    with models.use(name) as model:
        run_task(
            task,
            model,
            tokenizer,
            suite.model_copy(update={"engine": "plain"}),
            requests,
            1,
            lambda record: plain.__setitem__(record["id"], record),
            None,
        )
    ids = [r.id for r in requests]
    out = {
        "samples": len(ids),
        "engine": engine,
        "against": "4-bit base + peft adapter, transformers generate, batch 1",
        "wall_s": round(time.time() - started, 3),
    }
    if task.kind == "perplexity":
        worst = max(abs(plain[i]["nll"] - fast[i]["nll"]) / max(abs(plain[i]["nll"]), 1e-12) for i in ids)
        out.update(
            max_relative_nll_difference=worst,
            summary=f"{len(ids)} documents, NLL within {worst:.2e} (relative) of the plain path",
        )
        return out
    differ = [i for i in ids if plain[i]["output"] != fast[i]["output"]]
    out.update(
        agree=len(ids) - len(differ),
        agreement=(len(ids) - len(differ)) / len(ids),
        differ=differ[:50],
        summary=f"{len(ids) - len(differ)}/{len(ids)} answers equal the plain path's",
    )
    return out


def _quiet(*_args, **_kwargs) -> None:
    pass


def _fewshot_pool(suite: SuiteConfig, dataset: Dataset, source: str) -> list[dict]:
    f = suite.prompt.fewshot
    if not f.k:
        return []
    if f.path is None:
        return dataset.examples
    return load_dataset(
        f.path, "auto", f.split, suite.dataset.fields, None, f.seed, where=f"{source} prompt.fewshot.path"
    ).examples


def _dataset_info(dataset: Dataset) -> dict:
    return {
        "source": dataset.source,
        "path": dataset.path,
        "format": dataset.format,
        "sha256": dataset.sha256,
        "examples": len(dataset.examples),
    }


def _models_info(models, columns: dict) -> list[dict]:
    """One entry per column: the model's description, with its generation variant when there is a grid."""
    return [
        {
            **_model_info(models, name),
            "name": column,
            **({"model": name, "variant": variant.overrides} if variant.overrides else {}),
        }
        for column, (name, variant) in columns.items()
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
