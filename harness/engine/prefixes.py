"""Shared prompt prefixes: which prompts begin with the same tokens, so a batch prefills them once.

Reading-comprehension suites ask several questions about one passage (KorQuAD dev: about six
per paragraph), and few-shot or system-prompt suites repeat the same examples before every
question. Under a causal mask the keys and values of a prefix do not depend on what follows it,
so the decoder computes each distinct prefix once per batch and copies it to every row that
starts with it; only the rest of each prompt (the question) is prefilled per row. The outputs
are the same model function: positions and masks are each row's own.
"""

from __future__ import annotations  # noqa: I001
import itertools

# Below this many common tokens (an instruction header, a chat template's opening) sharing saves
# little and would group unrelated prompts.
MIN_SHARED = 32


def plan(encoded: list[list[int]], min_shared: int = MIN_SHARED, weak: float = 0.5) -> tuple[list[int], list[int]]:
    """(order, shared): the prompts in the order to batch them, and per prompt how many leading
    tokens it shares with the other prompts of its group (0 when it shares nothing).

    Prompts are sorted by their tokens, so those with a common beginning are neighbours; a run
    of neighbours sharing at least `min_shared` tokens is a group, split where two neighbours share
    less than `weak` times what a neighbouring pair shares (a half: see harness.engine.prefix_choices
    for a finer cut). Groups come longest first (a batch that does not fit fails
    at the start, and lengths within a batch stay close), and in a group the longest first.
    """
    n = len(encoded)
    by_tokens = sorted(range(n), key=lambda i: encoded[i])
    links = [_common_length(encoded[a], encoded[b]) for a, b in itertools.pairwise(by_tokens)]
    groups: list[tuple[list[int], int]] = []
    members, common = [by_tokens[0]] if n else [], None
    for j, link in enumerate(links):
        # A weak link (little in common, or less than `weak` times what a neighbouring link shares) ends a group.
        neighbours = max(links[j - 1] if j else 0, links[j + 1] if j + 1 < len(links) else 0)
        if link < min_shared or link < weak * neighbours:
            groups.append((members, common or 0))
            members, common = [], None
        else:
            common = link if common is None else min(common, link)
        members.append(by_tokens[j + 1])
    if members:
        groups.append((members, common or 0))
    shared = [0] * n
    for group, length in groups:
        if len(group) > 1:
            for i in group:
                # At least the last prompt token is prefilled per row: its logits choose the first answer token.
                shared[i] = min(length, len(encoded[i]) - 1)
        group.sort(key=lambda i: (-len(encoded[i]), i))
    groups.sort(key=lambda g: (-len(encoded[g[0][0]]), g[0][0]))
    return [i for group, _ in groups for i in group], shared


def split(prompts: list[list[int]], shared: list[int] | None) -> list[int]:
    """Per row, the tokens prefilled in the shared pass (the rest is prefilled per row).

    With sharing, a row that shares nothing puts all but its last token in the first pass, so
    every row's second pass stays short. Every row then holds both parts' widths of cache, so a
    batch where sharing saves less than a quarter of the prefill is not split: one pass, as if
    there were no prefixes."""
    if not shared or not any(shared):
        return [0] * len(prompts)
    first = [k if k else len(p) - 1 for p, k in zip(prompts, shared)]
    distinct = {tuple(p[:k]) for p, k in zip(prompts, first)}
    two_passes = len(distinct) * first_width(first) + len(prompts) * max(len(p) - k for p, k in zip(prompts, first))
    if 4 * two_passes > 3 * len(prompts) * max(len(p) for p in prompts):
        return [0] * len(prompts)
    return first


def first_width(first: list[int]) -> int:
    """Slots of the first part: its longest, rounded up to a multiple of 16, because the fused
    attention kernels want key lengths in such multiples (otherwise the pass over the prefixes
    falls back to attention that materialises every score)."""
    return -(-max(first) // 16) * 16


def slots_needed(prompts: list[list[int]], shared: list[int] | None, new_tokens: int) -> int:
    """Cache slots a batch needs: the first part, the longest second part, the new tokens."""
    return slots(prompts, split(prompts, shared), new_tokens)


def slots(prompts: list[list[int]], first: list[int], new_tokens: int) -> int:
    """`slots_needed` for a batch already split into `first` parts."""
    return first_width(first) + max(len(p) - k for p, k in zip(prompts, first)) + new_tokens


def _common_length(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
