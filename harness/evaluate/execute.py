"""Per model: run. One task's samples on one model, through the engine: the task says what to ask
(harness.engine.requests) and how an answer becomes a record; the engine runs the requests."""

from __future__ import annotations

from collections.abc import Callable

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
    run_requests(model, tokenizer, work, options, lambda index, result: on_record(task.record(requests[index], result)))
