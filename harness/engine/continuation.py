"""How a log-likelihood request becomes the token row the engine scores: the context and continuation
tokenized as lm-evaluation-harness's HF backend (0.4.13, at its defaults) tokenizes them, so that the
same request gets the same tokens, and so the same log-likelihood, in both
(tests/eval/test_choice_parity.py runs lm-evaluation-harness itself to prove it).

- A text is tokenized with the tokenizer's own special tokens (its BOS, where it adds one) unless it
  already starts with the prefix token's text, which then stands for it (lm-evaluation-harness's
  `tok_encode` and `has_bos_prefix`).
- The context's trailing whitespace moves to the continuation; context and continuation are
  tokenized together and the continuation's tokens are those past the context's own, so a token
  across the boundary belongs to the continuation.
- An empty context: the continuation alone, without special tokens, after the prefix token (BOS, or
  eos where the tokenizer has none); a continuation that starts with that token has it as context.
- Longer than the model's context, the row keeps its end: the context's length of inputs, and the
  last token, which is only predicted.
"""

from __future__ import annotations

from harness.engine.requests import LoglikelihoodRequest


def prefix_token(tokenizer) -> int | None:
    """What an empty context stands for (lm-evaluation-harness's `prefix_token_id`)."""
    return tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id


def prefix_text(tokenizer) -> str | None:
    """The prefix token as text: a text starting with it gets no special tokens of the tokenizer."""
    prefix = prefix_token(tokenizer)
    return None if prefix is None else tokenizer.decode(prefix)


def encode(tokenizer, text: str, prefix: str | None) -> list[int]:
    """`text`'s ids with the tokenizer's special tokens, none where `text` starts with the `prefix`
    token's text (it would be there twice)."""
    special = prefix is None or not text.startswith(prefix)
    return tokenizer.encode(text, add_special_tokens=special)


def move_spaces(context: str, continuation: str) -> tuple[str, str]:
    """The context's trailing whitespace moved to the start of the continuation."""
    spaces = len(context) - len(context.rstrip())
    return (context[:-spaces], context[-spaces:] + continuation) if spaces else (context, continuation)


def empty_context(tokenizer, continuation: str) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) for an empty context: the prefix token, then the continuation
    without special tokens, whose first token is the context instead where it is the prefix token."""
    prefix = prefix_token(tokenizer)
    tail = tokenizer.encode(continuation, add_special_tokens=False)
    return (tail[:1], tail[1:]) if tail and tail[0] == prefix else ([prefix], tail)


def continuation_row(tokenizer, request: LoglikelihoodRequest, limit: int | None) -> tuple[list[int], int]:
    """(ids, where the continuation starts) of a request; see the module's docstring."""
    if request.context:
        context, continuation = move_spaces(request.context, request.continuation)
        prefix = prefix_text(tokenizer)
        head = encode(tokenizer, context, prefix)
        tail = encode(tokenizer, context + continuation, prefix)[len(head) :]
    else:
        head, tail = empty_context(tokenizer, request.continuation)
    # A context of whitespace alone on a tokenizer that adds nothing: lm-evaluation-harness refuses it;
    # the prefix token gives the continuation's first token something to be predicted from.
    head = head or [prefix_token(tokenizer)]
    whole, start = head + tail, len(head)
    # The row's last token is never fed to the model (nothing is predicted from it), so a row may hold
    # one token more than the model's context: lm-evaluation-harness keeps the last `max_length + 1`.
    if limit and len(whole) > limit + 1:
        start, whole = max(1, start - (len(whole) - limit - 1)), whole[-(limit + 1) :]
    return whole, start
