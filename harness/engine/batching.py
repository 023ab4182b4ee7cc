"""How prompts become batches: longest first, cut to a size or to the GPU's free memory, dealt to
processes, cut smaller after CUDA runs out of memory; and how a batch's prefill is cut into passes
and its rows padded on the left."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from harness.config.generation import GenerationSettings
from harness.engine import prefixes
from harness.engine.cache import cache_length
from harness.engine.model_info import text_config
from harness.runtime.env import release_cuda_memory

# Prompt tokens per prefill forward: big enough for the matmuls to run at full speed, small enough
# that the activations (a few GB on a 7B model) fit beside a cache sized for decoding.
TOKENS_PER_PASS = 32768


@dataclass(frozen=True)
class Batch:
    """A batch as it runs: its prompts (indices, in row order) and, on the static-cache engine, the
    cache it runs on: (rows, slots). Consecutive batches of one cache reuse it."""

    items: tuple[int, ...]
    cache: tuple[int, int] | None = None


def longest_first(encoded: list[list[int]]) -> list[int]:
    """The prompts' order off the static cache: longest first, so a batch that does not fit fails at
    the start, not after an hour, and padding stays small."""
    return sorted(range(len(encoded)), key=lambda i: (-len(encoded[i]), i))


def left_pad(rows: list[list[int]], pad: int, width: int | None = None):
    """(input ids, attention mask) tensors of `rows` padded on the left to `width` (the longest row)."""
    width = width or max(len(r) for r in rows)
    return (
        torch.tensor([[pad] * (width - len(r)) + r for r in rows]),
        torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows]),
    )


def right_pad(rows: list[list[int]], pad: int):
    """(input ids, attention mask) tensors of `rows` padded on the right to the longest: an encoder's
    input, whose learned positions (BART) count from its first token."""
    width = max(len(r) for r in rows)
    return (
        torch.tensor([r + [pad] * (width - len(r)) for r in rows]),
        torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows]),
    )


def passes(lengths: list[int]) -> list[tuple[int, int, int]]:
    """(first, end, width) row ranges of a prefill: each pass holds at most TOKENS_PER_PASS tokens
    (one row at least) and is left-padded only to its own longest row, `width`. A batch runs longest
    prompts first, so a pass of short rows does not compute the padding of the batch's longest: the
    first 64 of 1,024 KorQuAD prompts run from 1,054 tokens down to 351."""
    out, lo = [], 0
    while lo < len(lengths):
        hi, width = lo + 1, max(lengths[lo], 1)
        while hi < len(lengths) and (hi + 1 - lo) * max(width, lengths[hi]) <= TOKENS_PER_PASS:
            width = max(width, lengths[hi])
            hi += 1
        out.append((lo, hi, width))
        lo = hi
    return out


@dataclass
class Planner:
    """Cuts prompts (`encoded`, each sharing `shared[i]` leading tokens with its group) into batches
    of `batch_size`, or sized from the memory `budget` (bytes) when there is one, each with the
    static cache it runs on (`static`)."""

    model: object
    encoded: list[list[int]]
    shared: list[int]
    settings: GenerationSettings
    batch_size: int
    budget: int | None
    static: bool

    def rows(self, items) -> tuple[list[list[int]], list[int]]:
        return [self.encoded[i] for i in items], [self.shared[i] for i in items]

    def cut(self, order: list[int], cache: tuple[int, int] | None = None) -> list[Batch]:
        """`order` cut into batches; `cache`: the one open now, kept while batches fit it."""
        cuda = on_cuda(self.model)
        new_tokens = self.settings.max_new_tokens
        batches: list[Batch] = []
        start = 0
        while start < len(order):
            size = self.batch_size
            if self.budget is not None:
                size = auto_batch_size(self.model, len(self.encoded[order[start]]) + new_tokens, self.budget)
                # Rows sharing a prefix sit in the cache as [prefix][rest]: a batch may need more slots
                # than its longest prompt.
                need = prefixes.slots_needed(*self.rows(order[start : start + size]), new_tokens)
                size = min(size, auto_batch_size(self.model, need, self.budget))
            items = tuple(order[start : start + size])
            if self.static:
                # On a GPU a short last batch is padded to a power of two: a graph's shape is fixed.
                rows = 1 << (len(items) - 1).bit_length() if cuda else len(items)
                need = prefixes.slots_needed(*self.rows(items), new_tokens)
                if cache is None or not _reusable(cache, rows, need):
                    cache = (rows, cache_length(need))
            batches.append(Batch(items, cache if self.static else None))
            start += len(items)
        return batches

    def back_off(self, failed: Batch, left: list[Batch]) -> list[Batch]:
        """`left` (the failed batch first) cut again after CUDA ran out of memory on `failed`: batches
        of half its size, or from two thirds of the memory budget."""
        self.batch_size = max(1, len(failed.items) // 2)
        if self.budget is not None:
            # Automatic sizes come from the memory budget: shrink that, so the shorter batches
            # later on still get sizes that fit them.
            self.budget = self.budget * 2 // 3
        return self.cut([i for b in left for i in b.items])


def _reusable(cache: tuple[int, int], rows: int, need: int) -> bool:
    """Whether a batch of `rows` rows needing `need` slots can run on `cache` (rows, slots) without
    much waste. Batches come longest first, so a cache sized for the first batch fits all; it is
    rebuilt when a batch needs under 3/4 of it (attention reads every slot) or has another size."""
    cache_rows, slots = cache
    return need <= slots and 4 * need >= 3 * slots and cache_rows == rows


def deal(batches: list[Batch], rank: int, world: int) -> list[Batch]:
    """Process `rank`'s share of `batches`: each batch, costliest first, goes to the process with the
    least work so far (ties: the lowest rank). A share keeps the batches' order."""

    def cost(b: Batch) -> int:
        # A decoding step reads every slot of every row of the cache; off the static cache, prompts.
        return b.cache[0] * b.cache[1] if b.cache else len(b.items)

    load, mine = [0] * world, []
    for index in sorted(range(len(batches)), key=lambda i: (-cost(batches[i]), i)):
        owner = min(range(world), key=lambda r: (load[r], r))
        load[owner] += cost(batches[index])
        if owner == rank:
            mine.append(index)
    return [batches[i] for i in sorted(mine)]


def auto_batch_size(model, slots: int, budget: int, cap: int = 256) -> int:
    """The largest power-of-two batch (≤ cap) whose KV cache of `slots` per row fits in 80% of
    `budget` bytes beside one prefill pass's activations (the decoder prefills in passes of at
    most TOKENS_PER_PASS tokens, whatever the batch)."""
    config = text_config(model)
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    size = model.get_input_embeddings().weight.element_size()
    kv = 2 * config.num_hidden_layers * heads * head_dim * size * slots
    # A pass's activations: the MLP's, attention's and the float32 copies norms and LoRA make.
    prefill = TOKENS_PER_PASS * (config.hidden_size * 16 + config.intermediate_size * 4) * size
    per_row = kv + config.vocab_size * 8  # and each row's last logits, in float32 twice
    batch = cap
    while batch > 1 and batch * per_row + prefill > 0.8 * budget:
        batch //= 2
    return batch


def free_cuda_bytes() -> int:
    release_cuda_memory()
    return int(torch.cuda.mem_get_info()[0])


def on_cuda(model) -> bool:
    return next(model.parameters()).device.type == "cuda"
