"""Choosing each new token: transformers' own logits processors (repetition penalty, n-gram ban,
temperature/top-k/top-p), applied in the order `generate` applies them, so greedy answers equal
`generate`'s."""

from __future__ import annotations

import torch
from transformers import LogitsProcessorList
from transformers.generation.logits_process import (
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from harness.config.generation import GenerationSettings


def left_padding(rows: list[list[int]], device):
    """How many pad tokens `batching.left_pad` puts before each row."""
    width = max(len(r) for r in rows)
    return torch.tensor([width - len(r) for r in rows], device=device)


def processors(settings: GenerationSettings, padding) -> LogitsProcessorList:
    """transformers' logits processors for `settings`, in `generate`'s order (empty for plain greedy).

    `padding`: each row's left padding, which the repetition penalty must not count as text the row
    holds (`generate` passes the same from the attention mask): where a tokenizer has no pad token the
    padding is eos, and a padded row would be pushed away from ending where it would end alone.
    min_new_tokens is applied by `choose` itself: it only bans eos, whatever the order."""
    s = settings
    chain = LogitsProcessorList()
    if s.repetition_penalty != 1.0:
        chain.append(RepetitionPenaltyLogitsProcessor(penalty=s.repetition_penalty, prompt_ignore_length=padding))
    if s.no_repeat_ngram_size:
        chain.append(NoRepeatNGramLogitsProcessor(s.no_repeat_ngram_size))
    if s.do_sample:
        if s.temperature != 1.0:
            chain.append(TemperatureLogitsWarper(s.temperature))
        if s.top_k:
            chain.append(TopKLogitsWarper(top_k=s.top_k, min_tokens_to_keep=1))
        if s.top_p < 1.0:
            chain.append(TopPLogitsWarper(top_p=s.top_p, min_tokens_to_keep=1))
    return chain


def choose(settings: GenerationSettings, chain, eos, sequence, logits, step: int):
    """Each row's next token from its `logits` (`sequence`: the rows so far, which the processors
    `chain` read; None when there are none)."""
    if step < settings.min_new_tokens:  # transformers' MinNewTokensLengthLogitsProcessor
        logits = logits.index_fill(1, eos, -float("inf"))
    scores = chain(sequence, logits) if chain else logits
    if settings.do_sample:
        return torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)
    return scores.argmax(dim=-1)
