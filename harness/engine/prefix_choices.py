"""One-token choices after shared few-shot prefixes: answered from the static-cache decoder's
prefill, each distinct prefix computed once per batch.

A few-shot choice suite puts the same solved examples before many questions: KMMLU's few-shot pool
is a subject's five dev examples, so every 5-shot context of the subject is one of their 120 orders,
and the examples are most of each context. A group of requests that scores only the last input
position (one-token choices " A" … " D" after one context: `Group.first == len(inputs) - 1`) needs
only that position's logits, which is what the decoder's prefill returns; its prefill computes each
distinct prefix of a batch once and copies its keys and values to every row that starts with it
(harness.engine.prefixes, harness.engine.decoding). The logits are the same model function: each
row keeps its own positions and mask.

Groups that share no prefix with others, multi-token continuations, and models the static decoder
does not run (`model_info.supported`) keep scoring.py's one forward per batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from harness.config.generation import GenerationSettings
from harness.engine import prefixes
from harness.engine.batching import Planner, free_cuda_bytes, on_cuda
from harness.engine.decoding import StaticDecoder
from harness.engine.model_info import supported
from harness.engine.requests import RunOptions
from harness.engine.scoring import Group
from harness.runtime.env import release_cuda_memory

# Where sorted contexts' common beginnings drop below this share of their neighbours', they hold
# different shots: 5-shot orders of one pool that begin alike share 3 of 5 shots, so generation's
# cut at a half would prefill only those 3 once and the other 2 per row.
WEAK_LINK = 0.9
# Only the prefill runs; the decoder's cache holds one slot past the prompt for the step it never takes.
SETTINGS = GenerationSettings(max_new_tokens=1)


def take(model, groups: list[Group], options: RunOptions) -> tuple[list[Group], list[int], list[Group]]:
    """(the one-token groups that share a prefix with others, in the order to batch them; how many
    leading tokens each shares; the other groups)."""
    if options.engine == "plain" or supported(model, SETTINGS):
        return [], [], groups
    last = [g for g in groups if g.first == len(g.inputs) - 1]
    if len(last) < 2:
        return [], [], groups
    order, shared = prefixes.plan([g.inputs for g in last], weak=WEAK_LINK)
    chosen = [i for i in order if shared[i]]
    taken = {id(last[i]) for i in chosen}
    return [last[i] for i in chosen], [shared[i] for i in chosen], [g for g in groups if id(g) not in taken]


def score(
    model, tokenizer, groups: list[Group], shared: list[int], options: RunOptions, rows_per_batch: int, answer: Callable
) -> None:
    """`answer(request index, log-probability, greedy, 1)` for every member of `groups`, batch by
    batch; on CUDA batches are sized from free memory (unless `options.batch_size`), elsewhere they
    hold `options.batch_size` or `rows_per_batch` rows."""
    encoded = [g.inputs for g in groups]
    budget = free_cuda_bytes() if options.batch_size is None and on_cuda(model) else None
    planner = Planner(model, encoded, shared, SETTINGS, options.batch_size or rows_per_batch, budget, True)
    queue = planner.cut(list(range(len(groups))))
    decoder, pending = None, None
    try:
        while queue:
            planned = queue.pop(0)
            if decoder is None or (decoder.batch, decoder.max_len) != planned.cache:
                if decoder is not None:
                    decoder.close()
                decoder = StaticDecoder(model, tokenizer, SETTINGS, *planned.cache)
            try:
                queued = _prefill(decoder, *planner.rows(planned.items), [groups[i] for i in planned.items])
            except torch.OutOfMemoryError:
                if len(planned.items) == 1:
                    raise
                decoder.close()
                decoder = None
                release_cuda_memory()
                queue = planner.back_off(planned, [planned, *queue])
                continue
            # The previous batch is answered (its records written) while the GPU computes this one.
            done, pending = pending, queued
            if done is not None:
                done.answer(answer)
        if pending is not None:
            done, pending = pending, None
            done.answer(answer)
    except KeyboardInterrupt:
        if pending is not None:  # computed, or nearly: its records are kept
            pending.answer(answer)
        raise
    finally:
        if decoder is not None:
            decoder.close()


@dataclass
class Queued:
    """A batch's scores on their way to the host: on CUDA the copy is queued behind the batch's
    forwards, so reading them waits for this batch alone, not for one queued after it."""

    indices: list[int]  # the request of each score
    picked: torch.Tensor  # log-probabilities (float64)
    greedy: torch.Tensor
    ready: torch.cuda.Event | None

    def answer(self, answer: Callable) -> None:
        """`answer(request index, log-probability, greedy, 1)` for each score, once they are here."""
        if self.ready is not None:
            self.ready.synchronize()
        for i, p, b in zip(self.indices, self.picked.tolist(), self.greedy.tolist()):
            answer(i, p, bool(b), 1)


def _prefill(decoder: StaticDecoder, prompts, shared, groups: list[Group]) -> Queued:
    """The scores of every member of `groups`, from one prefill (queued, not waited for)."""
    logits = decoder.last_logits(prompts, shared)
    with torch.inference_mode():
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        best = logprobs.argmax(dim=-1)
        owner = torch.tensor([row for row, g in enumerate(groups) for _ in g.members], device=logits.device)
        targets = torch.tensor([last for g in groups for _, _, last in g.members], device=logits.device)
        picked, greedy = logprobs[owner, targets].double(), best[owner] == targets
        indices = [index for g in groups for index, _, _ in g.members]
        if not picked.is_cuda:
            return Queued(indices, picked, greedy, None)
        host = [torch.empty(t.shape, dtype=t.dtype, pin_memory=True) for t in (picked, greedy)]
        for to, t in zip(host, (picked, greedy)):
            to.copy_(t, non_blocking=True)
        ready = torch.cuda.Event()
        ready.record()
    return Queued(indices, *host, ready)
