"""A decoding step's attention (one query per row) in Triton kernels that give the same bits every call.

PyTorch picks cuDNN's attention on Hopper, and for one query per row cuDNN's results vary between
identical calls (up to 1e-3 on an H200): two identical eval runs gave different greedy answers near
ties. PyTorch's memory-efficient kernel repeats exactly but read a 256-row cache at less than half
cuDNN's speed (benchmarks/RESULTS.md), and a step at 256 rows is mostly reading the cache. Here each (row, head) reads its keys and values in a fixed order; where rows × heads are
too few to fill the GPU (a streamed answer), each one's slots are split into chunks whose partial
softmax sums are combined by a second kernel, again in a fixed order. No atomics, so the result
depends only on the inputs and the shapes.

Slots that the mask hides (a left-padded prompt's padding, the slots a batch has not reached yet)
are not read. Scores, softmax and the weighted sum of values are fp32 (SDPA's
kernels round the softmax weights to bf16 before multiplying them with the values), so results
differ from SDPA's in the last bits, as any change of kernel does.
"""

from __future__ import annotations

import contextlib
import math

import torch
import triton
import triton.language as tl

# Slots per loop step, warps per program and the loop's pipeline depth: the fastest measured on an
# H100 over 256 rows × 32 heads × 352 slots (figures in benchmarks/RESULTS.md).
BLOCK = 32
WARPS = 1
STAGES = 3
# Enough programs to fill an H100/H200 (132 SMs) a few times over; fewer rows × heads are split.
PROGRAMS = 512


@triton.jit
def _bias(mask_ptr, at, inside, hidden, HAS_MASK: tl.constexpr, BOOL_MASK: tl.constexpr):
    """The mask's bias for slots `at`, in log2 units, -inf where hidden (the mask dtype's minimum
    stands for hidden, as in transformers' masks)."""
    if BOOL_MASK:  # True: seen
        seen = tl.load(mask_ptr + at, mask=inside, other=0)
        bias = tl.where(seen != 0, 0.0, float("-inf"))
    elif HAS_MASK:
        bias = tl.load(mask_ptr + at, mask=inside, other=float("-inf")).to(tl.float32)
        bias = tl.where(bias <= hidden, float("-inf"), bias) * 1.4426950408889634
    else:
        bias = tl.where(inside, 0.0, float("-inf"))
    return bias


@triton.jit
def _partial(
    q_ptr,
    k_ptr,
    v_ptr,
    mask_ptr,
    out_ptr,
    m_ptr,
    l_ptr,
    acc_ptr,
    heads,
    group,
    slots,
    chunk,
    scale,
    hidden,
    q_b,
    q_h,
    k_b,
    k_h,
    k_s,
    v_b,
    v_h,
    v_s,
    mask_b,
    mask_h,
    mask_s,
    o_b,
    o_h,
    D: tl.constexpr,
    BLOCK: tl.constexpr,
    STAGES: tl.constexpr,
    HAS_MASK: tl.constexpr,
    BOOL_MASK: tl.constexpr,
    SPLIT: tl.constexpr,
):
    bh = tl.program_id(0)
    part = tl.program_id(1)
    b = bh // heads
    h = bh % heads
    kv = h // group
    d = tl.arange(0, D)
    mask_row = mask_ptr + b * mask_b + h * mask_h
    start = part * chunk
    stop = tl.minimum(start + chunk, slots)
    # The live range: from the first slot the mask shows to the last. A first pass over the mask
    # alone (2 bytes a slot against the 4·D of keys and values) leaves the main loop free of
    # branches, so Triton can pipeline its loads.
    lo = stop
    hi = start
    for first in range(start, stop, BLOCK):
        s = first + tl.arange(0, BLOCK)
        live = _bias(mask_row, s * mask_s, s < stop, hidden, HAS_MASK, BOOL_MASK) > float("-inf")
        lo = tl.minimum(lo, tl.min(tl.where(live, s, stop), 0))
        hi = tl.maximum(hi, tl.max(tl.where(live, s + 1, start), 0))
    q = tl.load(q_ptr + b * q_b + h * q_h + d).to(tl.float32) * (scale * 1.4426950408889634)
    # A finite floor, so a part with nothing live leaves its sums at zero instead of NaN.
    m = tl.full((), -1.0e30, tl.float32)
    total = tl.zeros((), tl.float32)
    acc = tl.zeros((D,), tl.float32)
    for first in tl.range(lo, hi, BLOCK, num_stages=STAGES):
        s = first + tl.arange(0, BLOCK)
        bias = _bias(mask_row, s * mask_s, s < hi, hidden, HAS_MASK, BOOL_MASK)
        live = (bias > float("-inf"))[:, None]  # hidden slots inside the range are not read either
        keys = tl.load(k_ptr + b * k_b + kv * k_h + s[:, None] * k_s + d[None, :], mask=live, other=0.0)
        values = tl.load(v_ptr + b * v_b + kv * v_h + s[:, None] * v_s + d[None, :], mask=live, other=0.0)
        score = tl.sum(keys.to(tl.float32) * q[None, :], 1) + bias
        top = tl.maximum(m, tl.max(score, 0))
        p = tl.exp2(score - top)
        keep = tl.exp2(m - top)
        acc = acc * keep + tl.sum(p[:, None] * values.to(tl.float32), 0)
        total = total * keep + tl.sum(p, 0)
        m = top
    if SPLIT:
        at = bh * tl.num_programs(1) + part
        tl.store(m_ptr + at, m)
        tl.store(l_ptr + at, total)
        tl.store(acc_ptr + at * D + d, acc)
    else:
        tl.store(out_ptr + b * o_b + h * o_h + d, (acc / total).to(out_ptr.dtype.element_ty))


@triton.jit
def _combine(out_ptr, m_ptr, l_ptr, acc_ptr, heads, parts, o_b, o_h, D: tl.constexpr, PARTS: tl.constexpr):
    bh = tl.program_id(0)
    b = bh // heads
    h = bh % heads
    i = tl.arange(0, PARTS)
    d = tl.arange(0, D)
    used = i < parts
    m = tl.load(m_ptr + bh * parts + i, mask=used, other=-1.0e30)
    total = tl.load(l_ptr + bh * parts + i, mask=used, other=0.0)
    acc = tl.load(acc_ptr + (bh * parts + i[:, None]) * D + d[None, :], mask=used[:, None], other=0.0)
    top = tl.max(m, 0)
    keep = tl.exp2(m - top)
    out = tl.sum(acc * keep[:, None], 0) / tl.sum(total * keep, 0)
    tl.store(out_ptr + b * o_b + h * o_h + d, out.to(out_ptr.dtype.element_ty))


def qualifies(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None) -> bool:
    """One query per row, on CUDA, no autograd; fp16/bf16; key and value heads dividing the query's;
    one head size, a power of two from 16 to 256; a mask (additive float, or bool with True for a
    slot seen; or none) that broadcasts over the query."""
    if query.dim() != 4 or key.dim() != 4 or value.dim() != 4:
        return False
    rows, heads, queries, size = query.shape
    return (
        queries == 1
        and query.is_cuda
        and query.dtype in (torch.float16, torch.bfloat16)
        and key.dtype == value.dtype == query.dtype
        and not torch.is_grad_enabled()
        and key.shape == value.shape
        and key.shape[0] == rows
        and key.shape[-1] == size
        and heads % key.shape[1] == 0
        and 16 <= size <= 256
        and size & (size - 1) == 0
        and query.stride(-1) == key.stride(-1) == value.stride(-1) == 1
        and (
            mask is None
            or (
                mask.dim() == 4
                and (mask.is_floating_point() or mask.dtype == torch.bool)
                and mask.shape[2] == 1
                and mask.shape[0] in (1, rows)
                and mask.shape[1] in (1, heads)
                and mask.shape[3] >= key.shape[2]
            )
        )
    )


def attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None, scale: float | None = None
) -> torch.Tensor:
    """softmax(q·kᵀ·scale + mask)·v for one query per row (see `qualifies`), shaped [rows, 1, heads,
    size] as transformers' attention functions return it."""
    rows, heads, _, size = query.shape
    kv_heads, slots = key.shape[1], key.shape[2]
    scale = 1.0 / math.sqrt(size) if scale is None else float(scale)
    out = torch.empty((rows, 1, heads, size), dtype=query.dtype, device=query.device)
    parts = _parts(rows * heads, slots)
    chunk = triton.cdiv(triton.cdiv(slots, parts), BLOCK) * BLOCK
    parts = triton.cdiv(slots, chunk)
    if mask is None:
        mask_args = (query, 0, 0, 0)
    else:
        if mask.dtype == torch.bool:
            mask = mask.view(torch.uint8)
        mask_args = (
            mask,
            mask.stride(0) if mask.shape[0] > 1 else 0,
            mask.stride(1) if mask.shape[1] > 1 else 0,
            mask.stride(3),
        )
    if parts > 1:
        m = torch.empty((rows * heads, parts), dtype=torch.float32, device=query.device)
        total = torch.empty_like(m)
        acc = torch.empty((rows * heads, parts, size), dtype=torch.float32, device=query.device)
    else:
        m = total = acc = out
    _partial[(rows * heads, parts)](
        query,
        key,
        value,
        mask_args[0],
        out,
        m,
        total,
        acc,
        heads,
        heads // kv_heads,
        slots,
        chunk,
        scale,
        torch.finfo(mask_args[0].dtype).min if mask_args[0].is_floating_point() else 0.0,
        query.stride(0),
        query.stride(1),
        key.stride(0),
        key.stride(1),
        key.stride(2),
        value.stride(0),
        value.stride(1),
        value.stride(2),
        *mask_args[1:],
        out.stride(0),
        out.stride(2),
        D=size,
        BLOCK=BLOCK,
        STAGES=STAGES,
        HAS_MASK=mask is not None,
        BOOL_MASK=mask is not None and mask.dtype == torch.uint8,
        SPLIT=parts > 1,
        num_warps=WARPS,
    )
    if parts > 1:
        _combine[(rows * heads,)](
            out,
            m,
            total,
            acc,
            heads,
            parts,
            out.stride(0),
            out.stride(2),
            D=size,
            PARTS=triton.next_power_of_2(parts),
            num_warps=4,
        )
    return out


def _parts(pairs: int, slots: int) -> int:
    """Chunks per (row, head): one where rows × heads fill the GPU, else enough to, down to a block each."""
    return max(1, min(PROGRAMS // pairs, triton.cdiv(slots, BLOCK)))


@contextlib.contextmanager
def one_query_steps():
    """transformers' SDPA attention with one query per row (see `qualifies`) run by `attention`,
    everything else by SDPA as before; put back on exit."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    local = ALL_ATTENTION_FUNCTIONS._local_mapping
    had, before = "sdpa" in local, local.get("sdpa")
    sdpa = ALL_ATTENTION_FUNCTIONS["sdpa"]

    def dispatch(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
        if (
            dropout == 0.0
            and not kwargs.get("softcap")
            and kwargs.get("position_bias") is None
            and kwargs.get("cache") is None
            and qualifies(query, key, value, attention_mask)
        ):
            return attention(query, key, value, attention_mask, scaling), None
        return sdpa(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)

    local["sdpa"] = dispatch
    try:
        yield
    finally:
        if had:
            local["sdpa"] = before
        else:
            local.pop("sdpa", None)
