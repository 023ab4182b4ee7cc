"""LoRA in two Triton kernels for the fast engine's forwards.

peft computes an unmerged LoRA as six or seven kernels per layer (the input cast to fp32, the
down and up products, the scale, a cast back, the sum, and for 4-bit bases a defensive clone). In
a decoding step, where each kernel has only a few rows to work on, they cost more than the layer's
own matrix product: with q/k/v/o adapted they are most of a step's kernels. In a prefill or a
perplexity forward they move the activations through memory five times in fp32, a large share of
the forward's GPU time (benchmarks/RESULTS.md). Here the down product (with the cast)
is one kernel and the up product, scale, rounding and sum another, written into the base layer's
fresh output; a few rows take one program per row, thousands take tiles of rows.

The arithmetic is peft's: the input in fp32, both products in fp32, the scale after the up product;
a 4-bit layer's LoRA output is rounded to the output dtype before the sum (peft's bitsandbytes
wrapper does), a plain layer's is added in fp32 and rounded once. Only the order of the fp32 sums
differs from cuBLAS', so a result can differ in its last bit.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

MAX_ROWS = 512  # up to a decoding step's rows one program per row; beyond, tiles of BLOCK_M rows
BLOCK_K = 4096  # a 7B model's whole row in one step: a decoding step's down product waits on one load, not four
BLOCK_N = 128
BLOCK_M = 64


@triton.jit
def _down(x_ptr, a_ptr, h_ptr, K, x_stride, RANK: tl.constexpr, BLOCK_K: tl.constexpr):
    """h[m, r] = Σ_k float(x[m, k]) · A[r, k]: one program per (row, rank)."""
    m = tl.program_id(0)
    r = tl.program_id(1)
    acc = tl.zeros([BLOCK_K], dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        k = k0 + tl.arange(0, BLOCK_K)
        inside = k < K
        x = tl.load(x_ptr + m * x_stride + k, mask=inside, other=0.0).to(tl.float32)
        a = tl.load(a_ptr + r * K + k, mask=inside, other=0.0)
        acc += x * a
    tl.store(h_ptr + m * RANK + r, tl.sum(acc, axis=0))


@triton.jit
def _up_add(
    y_ptr,
    h_ptr,
    b_ptr,
    N,
    y_stride,
    h_stride,
    scale,
    RANK: tl.constexpr,
    BLOCK_N: tl.constexpr,
    ROUND_FIRST: tl.constexpr,
):
    """y[m, n] = y[m, n] + (Σ_r B[n, r] · h[m, r]) · scale, in fp32, rounded once to y's dtype (twice
    with ROUND_FIRST: the LoRA term to y's dtype first)."""
    m = tl.program_id(0)
    n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    inside = n < N
    ranks = tl.arange(0, RANK)
    h = tl.load(h_ptr + m * h_stride + ranks)
    b = tl.load(b_ptr + n[:, None] * RANK + ranks[None, :], mask=inside[:, None], other=0.0)
    up = tl.sum(b * h[None, :], axis=1) * scale
    y = tl.load(y_ptr + m * y_stride + n, mask=inside)
    if ROUND_FIRST:
        up = up.to(y.dtype).to(tl.float32)
    tl.store(y_ptr + m * y_stride + n, (y.to(tl.float32) + up).to(y.dtype), mask=inside)


# The row count is not specialised: Triton would compile anew for counts divisible by 16, in the
# middle of an eval column (a stall of seconds, benchmarks/RESULTS.md).
@triton.jit(do_not_specialize=["M"])
def _down_tiles(
    x_ptr,
    a_ptr,
    h_ptr,
    M,
    K,
    x_stride,
    RANK: tl.constexpr,
    RANK_PAD: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """`_down` for BLOCK_M rows per program, on tensor cores: each operand is split in two TF32
    parts (a bf16 input is exact in one), so the products are fp32's to ~2^-22 (fp32 arithmetic
    without tensor cores was slower than peft's cast and fp32 GEMM; one TF32 part would round A to
    10 bits)."""
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_in = rows < M
    ranks = tl.arange(0, RANK_PAD)
    acc = tl.zeros([BLOCK_M, RANK_PAD], dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        k = k0 + tl.arange(0, BLOCK_K)
        inside = k < K
        x = tl.load(
            x_ptr + rows[:, None].to(tl.int64) * x_stride + k[None, :],
            mask=row_in[:, None] & inside[None, :],
            other=0.0,
        ).to(tl.float32)
        a = tl.load(a_ptr + ranks[None, :] * K + k[:, None], mask=inside[:, None] & (ranks < RANK)[None, :], other=0.0)
        acc += tl.dot(x, a, input_precision="tf32x3")
    tl.store(h_ptr + rows[:, None] * RANK + ranks[None, :], acc, mask=row_in[:, None] & (ranks < RANK)[None, :])


@triton.jit(do_not_specialize=["M"])
def _up_add_tiles(
    y_ptr,
    h_ptr,
    b_ptr,
    M,
    N,
    y_stride,
    h_stride,
    scale,
    RANK: tl.constexpr,
    RANK_PAD: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    ROUND_FIRST: tl.constexpr,
):
    """`_up_add` for a tile of BLOCK_M rows × BLOCK_N columns per program (tensor cores, as `_down_tiles`)."""
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_in, inside = rows < M, n < N
    ranks = tl.arange(0, RANK_PAD)
    rank_in = ranks < RANK
    h = tl.load(
        h_ptr + rows[:, None].to(tl.int64) * h_stride + ranks[None, :],
        mask=row_in[:, None] & rank_in[None, :],
        other=0.0,
    )
    b = tl.load(b_ptr + n[None, :] * RANK + ranks[:, None], mask=rank_in[:, None] & inside[None, :], other=0.0)
    up = tl.dot(h, b, input_precision="tf32x3") * scale
    where = y_ptr + rows[:, None].to(tl.int64) * y_stride + n[None, :]
    tile = row_in[:, None] & inside[None, :]
    y = tl.load(where, mask=tile)
    if ROUND_FIRST:
        up = up.to(y.dtype).to(tl.float32)
    tl.store(where, (y.to(tl.float32) + up).to(y.dtype), mask=tile)


def _rank_pad(rank: int) -> int:
    return max(16, triton.next_power_of_2(rank))  # a tile product's smallest side is 16


def down(x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """A(x) in fp32, one row per row of x: (rows × rank); a: fp32 (rank × in)."""
    rank, k = a.shape
    rows = x.numel() // k
    x2 = x.reshape(rows, k)
    h = torch.empty(rows, rank, dtype=torch.float32, device=x.device)
    if rows <= MAX_ROWS:
        _down[(rows, rank)](
            x2, a, h, k, x2.stride(0), RANK=rank, BLOCK_K=min(BLOCK_K, triton.next_power_of_2(k)), num_warps=4
        )
    else:
        _down_tiles[(triton.cdiv(rows, BLOCK_M),)](
            x2,
            a,
            h,
            rows,
            k,
            x2.stride(0),
            RANK=rank,
            RANK_PAD=_rank_pad(rank),
            BLOCK_M=BLOCK_M,
            BLOCK_K=64,
            num_warps=4,
        )
    return h


def add_lora_(
    result: torch.Tensor,
    x: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    scale: float,
    round_first: bool,
    h: torch.Tensor | None = None,
) -> torch.Tensor:
    """result += B(A(x)) · scale in place, as described above; a: fp32 (rank × in), b: fp32 (out × rank);
    h: A(x) when already computed (rows × rank, rows may be strided)."""
    rank = a.shape[0]
    n = b.shape[0]
    if h is None:
        h = down(x, a)
    rows = h.shape[0]
    y2 = result.view(rows, n)
    if rows <= MAX_ROWS:
        _up_add[(rows, triton.cdiv(n, BLOCK_N))](
            y2,
            h,
            b,
            n,
            y2.stride(0),
            h.stride(0),
            float(scale),
            RANK=rank,
            BLOCK_N=BLOCK_N,
            ROUND_FIRST=round_first,
            num_warps=4,
        )
    else:
        _up_add_tiles[(triton.cdiv(rows, BLOCK_M), triton.cdiv(n, BLOCK_N))](
            y2,
            h,
            b,
            rows,
            n,
            y2.stride(0),
            h.stride(0),
            float(scale),
            RANK=rank,
            RANK_PAD=_rank_pad(rank),
            BLOCK_M=BLOCK_M,
            BLOCK_N=BLOCK_N,
            ROUND_FIRST=round_first,
            num_warps=4,
        )
    return result
