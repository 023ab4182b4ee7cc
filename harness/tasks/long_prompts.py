"""Prompts longer than the model's context less `max_new_tokens` (on an encoder-decoder, than its
encoder's context): the suite's `prompt.overflow`.

truncate (the default): cut the passage (`prompt.truncate_field`; the task's own: `context` for QA,
`document` for summarization) from its left end until the prompt fits, so the instruction, the
question and the end of the passage stay, as lm-evaluation-harness cuts a context from the left;
skip: leave the sample out of the run; error: stop before any work, naming the sample.

A truncated request carries how many prompt tokens and passage characters were cut; a skipped one
carries why. `harness generate` with a single prompt keeps its own error (nothing is cut there).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from harness.errors import ConfigError

OVERFLOW_POLICIES = ("truncate", "skip", "error")


@dataclass(frozen=True)
class Fitted:
    prompt: str | None  # None: the sample is skipped
    cut_tokens: int = 0
    cut_chars: int = 0
    skip_reason: str = ""


def prompt_tokens(tokenizer, prompt: str) -> int:
    # Counted as the generation engine encodes a prompt, special tokens included.
    return len(tokenizer(prompt, add_special_tokens=True)["input_ids"])


def _token_starts(tokenizer, passage: str) -> list[int]:
    """Character offset at which each token of `passage` starts (where a cut may fall)."""
    try:
        offsets = tokenizer(passage, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        return [start for start, _end in offsets]
    except (NotImplementedError, KeyError, TypeError, ValueError):
        # Slow tokenizers have no offsets: spread the cuts evenly over the characters instead.
        n = max(1, len(tokenizer(passage, add_special_tokens=False)["input_ids"]))
        return [round(i * len(passage) / n) for i in range(n)]


def fit_prompt(
    render: Callable[[dict], str], example: dict, field: str, tokenizer, budget: int | None, policy: str, where: str
) -> Fitted:
    """The prompt of `example` made to fit `budget` tokens as `policy` says."""
    prompt = render(example)
    if budget is None:
        return Fitted(prompt)
    full = prompt_tokens(tokenizer, prompt)
    if full <= budget:
        return Fitted(prompt)
    if policy == "error":
        raise ConfigError(
            f"{where}: the prompt has {full} tokens, more than the {budget} the model's context leaves after "
            "max_new_tokens; set prompt.overflow: truncate (or skip), or lower generation.max_new_tokens"
        )
    if policy == "skip":
        return Fitted(None, skip_reason=f"{full} prompt tokens, {budget} fit")
    passage = example.get(field)
    if not isinstance(passage, str) or not passage:
        return Fitted(None, skip_reason=f"{full} prompt tokens, {budget} fit, and no '{field}' to cut")
    starts = _token_starts(tokenizer, passage)
    dropped, n = 0, full
    while dropped < len(starts):
        # Tokens do not add up exactly across a re-render, so cut the excess and measure again;
        # every round cuts at least one more token, so this ends.
        dropped = min(dropped + (n - budget), len(starts))
        cut = starts[dropped] if dropped < len(starts) else len(passage)
        prompt = render({**example, field: passage[cut:]})
        n = prompt_tokens(tokenizer, prompt)
        if n <= budget:
            return Fitted(prompt, cut_tokens=full - n, cut_chars=cut)
    return Fitted(None, skip_reason=f"{full} prompt tokens, {budget} fit, even with '{field}' cut whole")


def generation_budget(context_limit: int | None, suite, encoder_decoder: bool = False) -> int | None:
    """Prompt tokens that leave room for the largest max_new_tokens of the suite and its grid; on an
    encoder-decoder the prompt has the encoder's context alone and the answer the decoder's."""
    if not context_limit:
        return None
    largest = max(
        [
            suite.generation.max_new_tokens,
            *[v for v in suite.generation_grid.get("max_new_tokens", []) if isinstance(v, int)],
        ]
    )
    if encoder_decoder:
        if largest >= context_limit:  # the decoder's start token takes a position too
            raise ConfigError(
                f"generation.max_new_tokens={largest} exceeds the decoder's context of {context_limit} tokens "
                f"(its start token included); lower max_new_tokens to {context_limit - 1} or less"
            )
        return context_limit
    if largest >= context_limit:
        # No cut of any passage can help: say what to change instead of skipping every sample.
        raise ConfigError(
            f"generation.max_new_tokens={largest} leaves no room for a prompt in the model's "
            f"context of {context_limit}; lower max_new_tokens"
        )
    return context_limit - largest


def overflow_counts(requests: list) -> dict:
    """What results.json says about long prompts: how many were truncated or skipped, and which."""
    truncated = [r for r in requests if r.extra.get("truncated_tokens")]
    skipped = [r for r in requests if r.extra.get("skipped")]
    return {
        "truncated": len(truncated),
        "truncated_tokens": sum(r.extra["truncated_tokens"] for r in truncated),
        "skipped": len(skipped),
        "skipped_ids": [r.id for r in skipped][:100],
    }
