"""Log-likelihoods of continuations with shared forwards: the fast engine's way of answering
multiple-choice requests.

A continuation's scores read the logits at the positions before each of its tokens, and those
depend on the row's tokens up to its next-to-last one only. Requests whose rows agree on everything
but their last token (a choice question's " A" … " D" after one context, lm-evaluation-harness's
one-token case) are therefore answered from ONE forward of those shared input tokens; a row's last
token is never fed to the model at all.

Only the scored positions reach the LM head: a pre-hook on the model's output embedding gathers
their hidden states, so the head's product and the log-softmax run on those few vectors instead of
every position of every row. The model's own forward still applies whatever its family does after
the head (soft-capping, scaling), through a peft adapter and the fused kernels alike.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch

from harness.engine.batching import free_cuda_bytes, on_cuda
from harness.engine.model_info import text_config

# Share of free GPU memory one forward's activations may take (the rest: allocator slack, LoRA's
# float32 copies, fragmentation between forwards of other widths).
MEMORY_SHARE = 0.4
# Beyond this many tokens a forward is no faster per token (a 7B model on an H100 is near its
# matrix units' rate at a few thousand); it only holds more memory.
MAX_TOKENS_PER_FORWARD = 32768


@dataclass
class Group:
    """Rows that share their input tokens (everything but the last token): one forward answers all."""

    inputs: list[int]
    members: list[tuple[int, int, int]] = field(default_factory=list)  # (request index, start, last token)

    @property
    def first(self) -> int:
        """The first input position whose logits a member scores."""
        return min(start for _, start, _ in self.members) - 1


def group_rows(rows: list[tuple[list[int], int]], indices: list[int] | None = None) -> tuple[list[Group], list[int]]:
    """(groups of rows with the same input tokens, in first-seen order; the requests with nothing
    to score: an empty continuation). `indices`: each row's request index (default: its position)."""
    groups: dict[tuple[int, ...], Group] = {}
    empty = []
    for index, (ids, start) in zip(indices or range(len(rows)), rows):
        if start >= len(ids):
            empty.append(index)
            continue
        key = tuple(ids[:-1])
        groups.setdefault(key, Group(list(key))).members.append((index, start, ids[-1]))
    return list(groups.values()), empty


def tokens_per_forward(model, fallback: int) -> int:
    """How many tokens one forward may hold: from free GPU memory on CUDA (a forward's MLP and
    attention activations and the float32 copies norms and LoRA make, per token), else `fallback`."""
    if not on_cuda(model):
        return fallback
    config = text_config(model)
    size = model.get_input_embeddings().weight.element_size()
    per_token = (config.hidden_size * 16 + getattr(config, "intermediate_size", 4 * config.hidden_size) * 4) * size
    return max(fallback, min(MAX_TOKENS_PER_FORWARD, int(MEMORY_SHARE * free_cuda_bytes() / per_token)))


def batches(groups: list[Group], rows_per_forward: int | None, tokens: int) -> list[list[Group]]:
    """Groups longest first, cut into forwards of `rows_per_forward` rows, or (None) of at most
    `tokens` padded tokens (a forward's width is its first, longest row's)."""
    ordered = sorted(groups, key=lambda g: -len(g.inputs))
    out: list[list[Group]] = []
    for group in ordered:
        if out and (
            len(out[-1]) < rows_per_forward
            if rows_per_forward
            else (len(out[-1]) + 1) * len(out[-1][0].inputs) <= tokens
        ):
            out[-1].append(group)
        else:
            out.append([group])
    return out


def score_groups(model, groups: list[Group]) -> list[tuple[int, float, bool, int]]:
    """(request index, summed log-probability in nats, greedy, scored tokens) of every member of
    `groups`, from one forward of their right-padded inputs (no mask needed under a causal mask)."""
    device = next(model.parameters()).device
    width = max(len(g.inputs) for g in groups)
    ids = torch.tensor([g.inputs + [g.inputs[-1]] * (width - len(g.inputs)) for g in groups], device=device)
    # The scored positions of every group, flattened: row, position.
    spans = [(row, p) for row, g in enumerate(groups) for p in range(g.first, len(g.inputs))]
    rows_t = torch.tensor([r for r, _ in spans], device=device)
    positions_t = torch.tensor([p for _, p in spans], device=device)
    with torch.inference_mode(), _gather_before_head(model, ids.shape, rows_t, positions_t) as gathered:
        logits = model(input_ids=ids, use_cache=False).logits
        logits = logits[0] if gathered() else logits[rows_t, positions_t]
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        best = logprobs.argmax(dim=-1)
        # Each member's targets: where in `spans` its positions are, and the tokens they predict.
        where, targets, owner, results = [], [], [], []
        offset = 0
        for g in groups:
            for index, start, last in g.members:
                for p in range(start - 1, len(g.inputs)):
                    where.append(offset + p - g.first)
                    targets.append(g.inputs[p + 1] if p + 1 < len(g.inputs) else last)
                    owner.append(len(results))
                results.append((index, len(g.inputs) + 1 - start))
            offset += len(g.inputs) - g.first
        where_t, targets_t = torch.tensor(where, device=device), torch.tensor(targets, device=device)
        owner_t = torch.tensor(owner, device=device)
        picked = logprobs[where_t, targets_t].double()
        sums = torch.zeros(len(results), dtype=torch.float64, device=device).index_add_(0, owner_t, picked)
        misses = torch.zeros(len(results), dtype=torch.long, device=device)
        misses.index_add_(0, owner_t, (best[where_t] != targets_t).long())
        # One wait for the GPU per forward.
        sums_l, misses_l = sums.tolist(), misses.tolist()
    return [(index, s, m == 0, n) for (index, n), s, m in zip(results, sums_l, misses_l)]


@contextlib.contextmanager
def _gather_before_head(model, shape: torch.Size, rows: torch.Tensor, positions: torch.Tensor):
    """While open, the output embedding receives only the hidden states at (rows, positions), as
    one sequence; yields a callable saying whether it did (a family that computes its logits
    another way gets every position, gathered after)."""
    head = model.get_output_embeddings()
    fired = []

    def gather(_module, args):
        hidden = args[0] if args else None
        if hidden is None or hidden.dim() != 3 or hidden.shape[:2] != shape:
            return None
        fired.append(True)
        return (hidden[rows, positions].unsqueeze(0), *args[1:])

    handle = head.register_forward_pre_hook(gather) if head is not None else None
    try:
        yield lambda: bool(fired)
    finally:
        if handle is not None:
            handle.remove()
