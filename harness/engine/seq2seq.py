"""Log-likelihoods on an encoder-decoder (T5, BART): the context (or a perplexity source) is the
encoder's input and the scored text is the decoder's, as the model is trained on it.

A perplexity text is tokenized as a training target is (the tokenizer's special tokens included:
T5's closing </s>, BART's <s> … </s>) and the decoder reads it after its start token, so every one of
its tokens is scored, the first from the start token alone; a document without a source has the
tokenizer's encoding of the empty text as encoder input (</s> on T5, <s></s> on BART). A
log-likelihood request (a choice) is tokenized as lm-evaluation-harness's seq2seq backend does: see
`continuation_row`. An encoder input longer than the encoder's context keeps its end.
"""

from __future__ import annotations

from harness.engine.batching import right_pad
from harness.engine.continuation import empty_context, encode, move_spaces, prefix_text
from harness.engine.model_info import context_length
from harness.engine.requests import LoglikelihoodRequest, RollingLoglikelihoodRequest
from harness.errors import HarnessError
from harness.model.families import decoder_start


def encoder_input(model, tokenizer, text: str) -> list[int]:
    return keep_end(model, tokenizer(text, add_special_tokens=True)["input_ids"])


def keep_end(model, ids: list[int]) -> list[int]:
    limit = context_length(model)
    return ids[-limit:] if limit and len(ids) > limit else ids


def continuation_row(model, tokenizer, request: LoglikelihoodRequest) -> tuple[list[int], tuple[list[int], int]]:
    """(encoder input, (decoder row, where the continuation starts in it)) of a request, as
    lm-evaluation-harness's seq2seq backend makes them: the context with its special tokens (its
    trailing whitespace moved to the continuation; an empty one is the prefix token, as on a
    decoder-only model), the continuation without them after the decoder's start token, so that the
    end-of-text token is not scored."""
    if request.context:
        context, continuation = move_spaces(request.context, request.continuation)
        source = encode(tokenizer, context, prefix_text(tokenizer))
        target = tokenizer.encode(continuation, add_special_tokens=False)
    else:
        source, target = empty_context(tokenizer, request.continuation)
    return keep_end(model, source), ([decoder_start(model), *target], 1)


def rolling_row(model, tokenizer, request: RollingLoglikelihoodRequest) -> tuple[list[int], tuple[list[int], int, int]]:
    """(encoder input, (decoder row: the start token then the text, the text's UTF-8 bytes, the first
    scored position)): every token of the text is scored."""
    limit = context_length(model)
    if limit and request.context_length > limit:
        raise HarnessError(
            f"perplexity.context_length={request.context_length} exceeds the decoder's context of {limit} "
            f"tokens; lower it to {limit} or less"
        )
    target = tokenizer(request.text, add_special_tokens=True)["input_ids"]
    source = encoder_input(model, tokenizer, request.source or "")
    return source, ([decoder_start(model), *target], len(request.text.encode("utf-8")), 1)


def logits(model, sources: list[list[int]], decoder_ids):
    """The decoder's logits over `decoder_ids` (rows right-padded with their last token: under the
    decoder's causal mask no scored position sees it), each row conditioned on its encoder input."""
    device = decoder_ids.device
    pad = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    encoder_ids, attention = right_pad(sources, pad)
    return model(
        input_ids=encoder_ids.to(device),
        attention_mask=attention.to(device),
        decoder_input_ids=decoder_ids,
        use_cache=False,
    ).logits
