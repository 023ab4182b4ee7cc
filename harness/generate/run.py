"""`harness generate`: your own prompts through the base and its adapters, side by side.

Same loader (one base, adapters attached), same engine (`harness.engine.generation.generate`, batched
and length-sorted) and same generation settings as `harness eval`. Every model × variant answers every
prompt; each answer carries token counts, timing, the stop reason and repetition statistics, and is
appended to `--out` as soon as its batch finishes (under several processes, each rank to its own shard
of it, which rank 0 then appends to `--out` in prompt order).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

from harness.config.generation import Variant
from harness.engine.requests import GenerationRequest, RunOptions
from harness.engine.text import encode_for
from harness.generate.prompts import PromptItem
from harness.metrics.repetition import repetition_stats
from harness.runs.jsonl import RecordAppender


def make_record(item: PromptItem, prompt: str, model: str, variant: Variant, generated) -> dict:
    time_s = round(generated.time_s, 4)
    return {
        "prompt_id": item.id,
        "prompt": prompt,
        "model": model,
        "column": variant.label(model),
        "variant": variant.overrides,
        "settings": variant.settings.model_dump(mode="json"),
        "output": generated.output,
        "prompt_tokens": generated.prompt_tokens,
        "generated_tokens": generated.generated_tokens,
        "stop_reason": generated.stop_reason,
        "hit_limit": generated.stop_reason == "length",
        "time_s": time_s,
        "batch_size": generated.batch_size,
        "tokens_per_s": round(generated.generated_tokens / time_s, 2) if time_s > 0 else None,
        "repetition": repetition_stats(generated.output).to_dict(),
    }


def check_context(
    tokenizer, model, prompts: list[str], ids: list[str], variants: list[Variant], chat: bool = False
) -> None:
    """Refuse a too-long prompt before anything is generated (the longest max_new_tokens of the grid)."""
    longest = max(variants, key=lambda v: v.settings.max_new_tokens).settings
    encode_for(model, tokenizer, prompts, ids, longest, chat)


def run_generate(
    models,
    names: list[str],
    items: list[PromptItem],
    prompts: list[str],
    variants: list[Variant],
    batch_size: int,
    append: Callable[[dict], None],
    stream: Callable[[str], None] | None = None,
    engine: str = "auto",
    dense: bool = False,
    shard=None,
    chat: bool = False,
) -> tuple[list[dict], dict[str, float]]:
    """Every model × variant on every prompt; returns the records (also passed to `append` as they
    finish) and each model × variant's wall time.

    `stream`: with one prompt and one model × variant, the answer's text as it is generated; it
    runs on the 4-bit weights (one token at a time reads 3.5× fewer bytes from NF4 than from
    bf16). `dense`: batches run on the base dequantized once, adapters unmerged (harness.model.dense).
    `shard`: a world of processes, each running its share of the batches (`generation.generate`).
    `chat`: the prompts were rendered by the chat template (see `generation.encode_prompts`).
    """
    # The model stack (torch) loads once a model runs.
    from harness.engine.generation import generate, generate_stream

    tokenizer = models.base.tokenizer
    requests = [GenerationRequest(prompt, item.id) for prompt, item in zip(prompts, items)]
    records: list[dict] = []
    wall: dict[str, float] = {}
    streaming = stream is not None and len(prompts) == 1 and len(names) * len(variants) == 1
    # Batches run on the base dequantized once for every model (harness.model.dense).
    with models.dense() if dense and not streaming else contextlib.nullcontext():
        for name in names:
            with models.use(name) as model:
                for variant in variants:
                    started = time.perf_counter()

                    def finished(index: int, generated, _name=name, _variant=variant) -> None:
                        record = make_record(items[index], prompts[index], _name, _variant, generated)
                        records.append(record)
                        append(record)

                    if streaming:
                        answer = generate_stream(
                            model,
                            tokenizer,
                            prompts[0],
                            variant.settings,
                            stream,
                            prompt_id=items[0].id,
                            engine=engine,
                            chat=chat,
                        )
                        finished(0, answer)
                    else:
                        options = RunOptions(variant.settings, batch_size, engine=engine, shard=shard, chat=chat)
                        generate(model, tokenizer, requests, options, finished)
                    wall[variant.label(name)] = time.perf_counter() - started
    return records, wall


def generate_to_file(
    models, items: list[PromptItem], prompts: list[str], out: str | None, world, **run
) -> tuple | None:
    """`run_generate` with each record appended to `out` as it finishes (when given). In a world of processes
    (harness.runtime.distributed.Dist) every rank answers its share into its own shard of `out`; rank 0
    then returns every rank's records in prompt order, appended to `out`, and the other ranks None."""
    shard = shard_path(out, world.rank) if world.active and out else None
    with appending(shard or out) as append:
        records, wall = run_generate(
            models, items=items, prompts=prompts, append=append, shard=world if world.active else None, **run
        )
    if not world.active:
        return records, wall
    parts = world.all_gather((records, wall))
    if not world.main:
        return None
    position = {item.id: n for n, item in enumerate(items)}
    records = sorted((r for part, _ in parts for r in part), key=lambda r: position[r["prompt_id"]])
    wall = {column: max(w.get(column, 0.0) for _, w in parts) for column in parts[0][1]}
    if out:
        with appending(out) as append:
            for record in records:
                append(record)
        for rank in range(world.world):
            shard_path(out, rank).unlink(missing_ok=True)
    return records, wall


@contextlib.contextmanager
def appending(path: str | Path | None):
    """An appender of records to `path` (`--out`), or one that keeps nothing when there is no path."""
    if not path:
        yield lambda record: None
        return
    append = RecordAppender(path, where=f"--out {path}: ")
    try:
        yield append
    finally:
        append.close()


def shard_path(out: str | Path, rank: int) -> Path:
    path = Path(out)
    return path.with_name(f"{path.stem}.rank{rank}{path.suffix}")
