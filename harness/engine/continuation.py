"""How a log-likelihood request becomes the token row the engine scores: the context and continuation
tokenized as lm-evaluation-harness's HF backend tokenizes them, so that the same request gets the
same log-likelihood in both."""

from __future__ import annotations

from harness.engine.requests import LoglikelihoodRequest


def continuation_row(tokenizer, request: LoglikelihoodRequest, limit: int | None) -> tuple[list[int], int]:
    """(ids, where the continuation starts) of a request. Context and continuation are tokenized
    together and the continuation's tokens are those past the context's own (a token across the
    boundary belongs to the continuation); the context's trailing spaces go to the continuation,
    as lm-evaluation-harness moves them. An empty context is the BOS token (or eos, where there is
    none). Longer than the model's context, the row keeps its end."""
    context, continuation = request.context, request.continuation
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = tokenizer(context + continuation, add_special_tokens=True)["input_ids"]
    start = len(tokenizer(context, add_special_tokens=True)["input_ids"]) if context else 0
    if start == 0:
        prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        whole = whole if whole and whole[0] == prefix else [prefix, *whole]
        start = 1
    if limit and len(whole) > limit:
        start, whole = max(1, start - (len(whole) - limit)), whole[-limit:]
    return whole, start
