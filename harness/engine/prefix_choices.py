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


class Stream:
    """Scores groups fed chunk by chunk (`feed`) on one decoder, so that a caller can prepare the next
    chunk (encode its texts) while the GPU computes this one: a chunk's last, partial batch waits for
    the next chunk's groups, and the batch queued last is answered only once the next is queued."""

    def __init__(self, model, tokenizer, options: RunOptions, answer: Callable, tokens_per_forward: int):
        """Without a batch size or a memory budget a batch holds `tokens_per_forward` tokens of its
        groups' longest."""
        self.model, self.tokenizer, self.options, self.answer = model, tokenizer, options, answer
        self.tokens_per_forward = tokens_per_forward
        self.budget = free_cuda_bytes() if options.batch_size is None and on_cuda(model) else None
        self.decoder = self.pending = None
        self.held: tuple[list[Group], list[int]] = ([], [])

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, kind, error, trace) -> None:
        try:
            if kind is not None and issubclass(kind, KeyboardInterrupt):
                self._answer_pending()  # computed, or nearly: its records are kept
        finally:
            if self.decoder is not None:
                self.decoder.close()

    def finish(self) -> None:
        """Score the held batch and answer the last one queued."""
        self.feed([], [], last=True)
        self._answer_pending()

    def _answer_pending(self) -> None:
        done, self.pending = self.pending, None
        if done is not None:
            done.answer(self.answer)

    def feed(self, groups: list[Group], shared: list[int], last: bool = False) -> None:
        """Score `groups` (each sharing `shared[i]` leading tokens), the held ones first; unless
        `last`, the final batch is held for the next feed."""
        groups, shared = self.held[0] + groups, self.held[1] + shared
        self.held = ([], [])
        if not groups:
            return
        encoded = [g.inputs for g in groups]
        rows = self.options.batch_size or max(1, self.tokens_per_forward // max(map(len, encoded)))
        planner = Planner(self.model, encoded, shared, SETTINGS, rows, self.budget, True)
        queue = planner.cut(list(range(len(groups))), self._cache())
        if not last and len(queue) > 1:
            kept = queue.pop().items
            self.held = ([groups[i] for i in kept], [shared[i] for i in kept])
        while queue:
            planned = queue.pop(0)
            self._open(planned.cache)
            try:
                queued = _prefill(self.decoder, *planner.rows(planned.items), [groups[i] for i in planned.items])
            except torch.OutOfMemoryError:
                if len(planned.items) == 1:
                    raise
                self.decoder.close()
                self.decoder = None
                release_cuda_memory()
                queue = planner.back_off(planned, [planned, *queue])
                self.budget = planner.budget  # and the next chunks' batches
                continue
            # The previous batch is answered (its records written) while the GPU computes this one.
            done, self.pending = self.pending, queued
            if done is not None:
                done.answer(self.answer)

    def _cache(self) -> tuple[int, int] | None:
        return None if self.decoder is None else (self.decoder.batch, self.decoder.max_len)

    def _open(self, cache: tuple[int, int]) -> None:
        """The decoder for a batch planned on `cache` (rows, slots): the open one where it is that."""
        if self.decoder is not None and self._cache() == cache:
            return
        if self.decoder is not None:
            self.decoder.close()
        self.decoder = StaticDecoder(self.model, self.tokenizer, SETTINGS, *cache)


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
