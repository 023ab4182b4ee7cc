"""The static decoder's first pass: each distinct prefix of a batch computed once, its keys and
values put in every row that starts with it (harness.engine.prefixes says which rows share what).

Prefixes that begin alike themselves (few-shot orders of one pool: a batch's neighbours in token
order share their first shots) are computed by a decoder of their own, which shares their
beginnings the same way, and copied; the others in passes over the distinct prefixes alone.
"""

from __future__ import annotations

import torch

from harness.config.generation import GenerationSettings
from harness.engine import prefixes
from harness.engine.batching import left_pad, passes, positions_of
from harness.engine.prefixes import first_width, slots_needed, split


def prefill_prefixes(decoder, rows: list[list[int]], first: list[int], width: int) -> None:
    """The first pass of the decoder's prefill: each distinct first part (`rows[i][:first[i]]`) once,
    left-padded to `width` slots in every row that starts with it; `decoder.valid` marks them."""
    heads = [tuple(p[:k]) for p, k in zip(rows, first)]
    index = {h: i for i, h in enumerate(dict.fromkeys(heads))}
    distinct = [list(h) for h in index]
    group = [index[h] for h in heads]
    attention = left_pad(distinct, decoder.pad, width)[1].to(decoder.device)
    decoder.valid[:, :width] = attention.bool().index_select(0, torch.tensor(group, device=decoder.device))
    together, nested = _nested(distinct)
    if together:
        _copy(decoder, [distinct[j] for j in together], nested, _regroup(group, together), width)
    alone = [j for j in range(len(distinct)) if j not in set(together)]
    if alone:
        _scatter(decoder, [distinct[j] for j in alone], _regroup(group, alone), width)


def _scatter(decoder, parts: list[list[int]], group: list[int], width: int) -> None:
    """Each of `parts` computed once, in passes, its keys and values written to every row r with
    `group[r]` its index (see harness.engine.cache's `_scatter`)."""
    dev, cache = decoder.device, decoder.cache
    ids, attention = (t.to(dev) for t in left_pad(parts, decoder.pad, width))
    for lo, hi, w in passes([len(h) for h in parts]):
        cache.scatter = (runs(group, lo, hi), slice(width - w, width))
        cache.positions = torch.arange(width - w, width, device=dev)
        seen = attention[lo:hi, width - w :]
        # The pass attends to its own keys only: slots 0 … w-1 of its mask.
        decoder._forward(
            ids[lo:hi, width - w :], positions_of(seen), decoder._mask(seen.bool(), torch.arange(w, device=dev))
        )
    cache.scatter = None


def _copy(decoder, distinct: list[list[int]], nested: list[int], group: list[int], width: int) -> None:
    """`prefill_prefixes` through a decoder of the distinct first parts (sharing `nested[i]`
    leading tokens each): its cache holds each part as [pad | its first part][pad | the rest],
    copied to the slots [width - len, width) of every row that starts with the part."""
    only = GenerationSettings(max_new_tokens=1)  # it prefills only: one slot past the parts
    sub = type(decoder)(decoder.model, decoder.tokenizer, only, len(distinct), slots_needed(distinct, nested, 1))
    try:
        parts, split_at = sub._fill(distinct, nested)
        sub._prefill(parts, split_at)  # inside this decoder's kernels already
        middle = first_width(split_at)
        end = middle + max(len(p) - a for p, a in zip(parts, split_at))
        spans = runs(group, 0, len(distinct))
        for mine, theirs in zip(decoder.cache.layers, sub.cache.layers):
            mine.allocate_like(theirs)
            for first, last, j in spans:
                a, n = split_at[j], len(distinct[j])
                # The part's first a tokens end at the sub-cache's first width, the rest at its end.
                for to, at in (
                    (slice(width - n, width - n + a), slice(middle - a, middle)),
                    (slice(width - n + a, width), slice(end - (n - a), end)),
                ):
                    for dst, src in ((mine.keys, theirs.keys), (mine.values, theirs.values)):
                        dst[first:last, :, to].copy_(src[j : j + 1, :, at].expand(last - first, -1, -1, -1))
    finally:
        sub.close()


def _nested(parts: list[list[int]]) -> tuple[list[int], list[int]]:
    """(the indices of the parts worth computing through a decoder of their own, the leading tokens
    each shares with others of them): those that share a beginning, when sharing it saves enough
    (harness.engine.prefixes' `split`); none otherwise."""
    _, shared = prefixes.plan(parts, weak=prefixes.FINE)
    together = [j for j, k in enumerate(shared) if k]
    nested = [shared[j] for j in together]
    if not any(split([parts[j] for j in together], nested)):
        return [], []
    return together, nested


def _regroup(group: list[int], chosen: list[int]) -> list[int]:
    """`group` (each row's part) renumbered over the `chosen` parts; -1 for a row of another part."""
    position = {j: n for n, j in enumerate(chosen)}
    return [position.get(g, -1) for g in group]


def runs(group: list[int], lo: int, hi: int) -> list[tuple[int, int, int]]:
    """(first row, end row, prefix - lo) of every run of neighbouring rows whose prefix (`group[row]`)
    is one of lo … hi-1."""
    runs: list[tuple[int, int, int]] = []
    for row, g in enumerate(group):
        if not lo <= g < hi:
            continue
        if runs and runs[-1][1] == row and runs[-1][2] == g - lo:
            runs[-1] = (runs[-1][0], row + 1, g - lo)
        else:
            runs.append((row, row + 1, g - lo))
    return runs
