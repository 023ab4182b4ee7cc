"""Per model: run. One task's samples on one model, through the engine: the task says what to ask
(harness.engine.requests) and how an answer becomes a record; the engine runs the requests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from harness.config.suite import SuiteConfig
from harness.engine.requests import RunOptions
from harness.tasks import Request, Task


def run_task(
    task: Task,
    model,
    tokenizer,
    suite: SuiteConfig,
    requests: list[Request],
    batch_size: int | None,
    on_record: Callable[[dict], None],
    progress=None,
    shard=None,
) -> None:
    """Run `requests` on `model`; each sample's record goes to `on_record` as soon as it is done.

    `batch_size` None: sized by the engine (see `RunOptions`). `shard`: a world of processes among
    which the engine deals whole batches (for tasks that `deals_batches`)."""
    from harness.engine.run import run_requests  # the model stack, only once a model runs

    options = RunOptions(
        settings=suite.generation,
        batch_size=batch_size,
        engine=suite.engine,
        shard=shard,
        chat=suite.prompt.chat,
        progress=progress,
    )
    work = [task.engine_request(suite, r) for r in requests]
    if not any(isinstance(w, list) for w in work):
        run_requests(model, tokenizer, work, options, lambda i, result: on_record(task.record(requests[i], result)))
        return
    # Several engine requests per sample (a choice task's choices): the sample's record is made once
    # all of them are answered; progress counts samples.
    owner = [n for n, w in enumerate(work) for _ in w]
    flat = [request for w in work for request in w]
    results: list[dict] = [{} for _ in work]

    def collect(index: int, result) -> None:
        n = owner[index]
        results[n][index] = result
        if len(results[n]) == len(work[n]):
            on_record(task.record(requests[n], [results[n][i] for i in sorted(results[n])]))
            results[n] = {}
            if progress is not None:
                progress.update(1)

    run_requests(model, tokenizer, flat, replace(options, progress=None), collect)
