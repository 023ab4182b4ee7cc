"""The engine's one entry point: a list of requests of one kind, run on a model and its tokenizer."""

from __future__ import annotations

from collections.abc import Callable

from harness.engine.generation import generate
from harness.engine.loglikelihood import loglikelihood, rolling_loglikelihood
from harness.engine.requests import (
    GenerationRequest,
    LoglikelihoodRequest,
    Request,
    Result,
    RollingLoglikelihoodRequest,
    RunOptions,
)

_RUNNERS = {
    GenerationRequest: generate,
    LoglikelihoodRequest: loglikelihood,
    RollingLoglikelihoodRequest: rolling_loglikelihood,
}


def run_requests(
    model, tokenizer, requests: list[Request], options: RunOptions, on_result: Callable[[int, Result], None]
) -> None:
    """Run every request (all of one kind); `on_result(index, result)` is called as each finishes
    (a generation batch, a text's last window), in no fixed order."""
    kinds = {type(r) for r in requests}
    if len(kinds) > 1:
        raise ValueError(f"one kind of request at a time, not {sorted(k.__name__ for k in kinds)}")
    if kinds:
        _RUNNERS[kinds.pop()](model, tokenizer, requests, options, on_result)
