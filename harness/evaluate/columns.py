"""Each column of an eval in turn: resume its finished records, generate the rest (each record scored and
appended as it finishes), then merge every rank's records into the column's file."""

from __future__ import annotations

import contextlib
import time

from tqdm.auto import tqdm

from harness.engine import fused
from harness.engine.pretokenize import shared_encodings
from harness.evaluate.execute import run_task
from harness.evaluate.plan import Column, EvalPlan
from harness.metrics.aggregate import score_record
from harness.runs.store import content_key
from harness.runtime.console import terminal
from harness.runtime.distributed import TotalProgress


def run_columns(plan: EvalPlan) -> tuple[dict[str, list[dict]], dict[str, dict]]:
    """(records in sample order, throughput), by column label."""
    records: dict[str, list[dict]] = {}
    throughput: dict[str, dict] = {}
    # The fast engine's dequantized base serves every column; verification runs after it is
    # put back, on the plain 4-bit path.
    with contextlib.ExitStack() as stack:
        stack.enter_context(shared_encodings())  # the columns' requests are the same texts
        ready = EngineReady(plan, stack)
        for column in plan.columns.values():
            records[column.label], throughput[column.label] = run_column(plan, column, ready)
    return records, throughput


def run_column(plan: EvalPlan, column: Column, ready: EngineReady) -> tuple[list[dict], dict]:
    dist = plan.dist
    keys = record_keys(plan, column)
    done = resume(plan, column.label, keys)
    todo = [i for i, key in enumerate(keys) if key not in done]
    dist.barrier()  # every rank has read the records before any rank appends new ones
    # A generative task deals whole batches to the ranks (`generation.generate`), so each sample
    # meets the rows and shapes of a single-process run; others take every world-th sample.
    dealt = dist.active and plan.task.deals_batches
    mine = todo if dealt else dist.shard(todo)
    if mine:
        ready(column.model)
    started = time.time()
    fresh = dist.union(generate(plan, column, keys, todo, mine, dealt))  # every rank's new records
    wall = time.time() - started
    done.update(fresh)
    ordered = [done[key] for key in keys]
    plan.run.merge_records(column.label, ordered, dist)
    return ordered, _throughput(len(plan.requests), len(todo), fresh, wall)


def record_keys(plan: EvalPlan, column: Column) -> list[str]:
    """Each sample's record key: everything that produced the record, so that resume reuses only a match."""
    settings = {
        "task": plan.task.kind,
        "generation": column.variant.settings.model_dump(mode="json"),
        "perplexity": perplexity_settings(plan.suite) if plan.task.kind == "perplexity" else None,
        "engine": plan.engine,
    }
    identity = plan.identities[column.model]
    # The id is part of the key: two samples with the same prompt and references (KorQuAD dev
    # has such pairs) must each keep their own record. A perplexity source, and a choice task's choices
    # after their delimiter, are part of what is scored.
    return [content_key(identity, settings, r.id, r.prompt, r.references, *_scored_extra(r)) for r in plan.requests]


def _scored_extra(request) -> list:
    extra = request.extra
    if "choices" in extra:
        return [extra["delimiter"], extra["choices"]]
    return [extra["source"]] if "source" in extra else []


def perplexity_settings(suite) -> dict:
    """The perplexity section as keys hold it: without a source field, as before there was one, so
    that earlier runs' records and ids stay valid."""
    settings = suite.perplexity.model_dump(mode="json")
    if settings["source_field"] is None:
        del settings["source_field"]
    return settings


def resume(plan: EvalPlan, label: str, keys: list[str]) -> dict[str, dict]:
    """The column's finished records by key, from the merged file and every earlier rank's shard (whatever
    the world size); those reused are rescored, since the suite's metrics may have changed."""
    done = plan.run.load_records(label)
    for note in plan.run.notes:
        plan.log(f"harness eval: {note}")
    plan.run.notes.clear()
    for key in set(keys) & done.keys():
        done[key]["metrics"] = score_record(done[key], plan.scorers)
    return done


def generate(plan: EvalPlan, column: Column, keys: list[str], todo: list[int], mine: list[int], dealt: bool):
    """This rank's samples (`mine` of `todo`), each record keyed, scored and appended to the run as it
    finishes; returns them by key."""
    dist = plan.dist
    fresh: dict[str, dict] = {}
    append, close = plan.run.appender(column.label, dist.rank if dist.active else None)

    def on_record(record: dict) -> None:
        record["key"] = keys[plan.position[record["id"]]]
        record["metrics"] = score_record(record, plan.scorers)
        fresh[record["key"]] = record
        append(record)

    bar = tqdm(
        total=len(todo),
        desc=column.label,
        unit="sample",
        file=terminal(),
        disable=not plan.progress_bars or not todo or not dist.main,
    )
    others = [plan.run.records_file(column.label, r) for r in range(1, dist.world)]
    progress = TotalProgress(bar, others) if dist.active else bar
    try:
        if mine:
            _run_task(plan, column, [plan.requests[i] for i in mine], on_record, progress, dist if dealt else None)
        if dist.active:
            progress.finish()
    finally:
        bar.close()
        close()
    return fresh


def _run_task(plan: EvalPlan, column: Column, requests: list, on_record, progress, shard) -> None:
    tokenizer, batch_size = plan.models.base.tokenizer, plan.batch_size
    with plan.models.use(column.model) as model:
        run_task(plan.task, model, tokenizer, column.suite, requests, batch_size, on_record, progress, shard=shard)


def _throughput(samples: int, todo: int, fresh: dict[str, dict], wall: float) -> dict:
    generated = sum(r.get("generated_tokens", 0) for r in fresh.values())
    return {
        "samples": todo,
        "reused": samples - todo,
        "wall_s": round(wall, 3),
        "samples_per_s": round(todo / wall, 3) if todo and wall > 0 else None,
        "generated_tokens_per_s": round(generated / wall, 2) if generated and wall > 0 else None,
    }


class EngineReady:
    """Makes the engine ready once, for the first column with work: the base dequantized (the fast
    engine; it then serves every column) and the fused kernels compiled."""

    def __init__(self, plan: EvalPlan, stack: contextlib.ExitStack):
        self.plan, self.stack = plan, stack
        self.dense = self.warmed = False

    def __call__(self, model_name: str) -> None:
        plan = self.plan
        if plan.engine == "dense" and not self.dense:
            started = time.time()
            self.stack.enter_context(plan.models.dense())
            self.dense = True
            plan.log(f"harness eval: base dequantized in {time.time() - started:.1f} s")
        if not self.warmed and plan.suite.engine != "plain":
            self.warmed = True
            with plan.models.use(model_name) as model:
                if compiled := fused.warm_up(model):
                    plan.log(f"harness eval: fused kernels compiled in {compiled:.1f} s")
