"""LoRA in two Triton kernels for the fast engine's forwards.

peft computes an unmerged LoRA as six or seven kernels per layer (the input cast to fp32, the
down and up products, the scale, a cast back, the sum, and for 4-bit bases a defensive clone). In
a decoding step, where each kernel has only a few rows to work on, they cost more than the layer's
own matrix product: with q/k/v/o adapted they are most of a 7B model's ~2,000 kernels per token.
In a prefill or a perplexity forward they move the activations through memory five times in fp32,
a large share of a forward's GPU time with q/k/v/o adapted (benchmarks/RESULTS.md). Here the down product (with the cast)
is one kernel and the up product, scale, rounding and sum another, written into the base layer's
fresh output; a few rows take one program per row, thousands take tiles of rows.

The arithmetic is peft's: the input in fp32, both products in fp32, the scale after the up product;
a 4-bit layer's LoRA output is rounded to the output dtype before the sum (peft's bitsandbytes
wrapper does), a plain layer's is added in fp32 and rounded once. Only the order of the fp32 sums
differs from cuBLAS', so a result can differ in its last bit.
"""

from __future__ import annotations

import functools
import weakref

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


def lora_layers(model) -> list:
    """The LoRA linear layers of `model` that `install` routes."""
    rounding = _rounding_by_class()
    return [m for m in model.modules() if type(m) in rounding and len(m.lora_A)]


def warm_up(layers: list, siblings: list[list] = ()) -> None:
    """Compile the kernels for the layers' shapes and dtypes now, not inside a timed step, and the
    down product of each sibling group's stack (see `_SharedDown`) for every adapter, whichever is
    active now (a cold machine's first adapted column stalled ~5 s compiling the stack's)."""
    seen = set()
    for group in siblings:
        dtype = _compute_dtype(group[0])
        for name in group[0].lora_A:
            matrices = [layer.lora_A[name].weight for layer in group if name in layer.lora_A]
            if (
                len(matrices) != len(group)
                or not dtype.is_floating_point
                or any(a.dtype != torch.float32 or not a.is_cuda for a in matrices)
            ):
                continue
            stacked = torch.cat(matrices)
            if (stacked.shape, dtype) not in seen:
                seen.add((stacked.shape, dtype))
                for rows in (1, MAX_ROWS + 1):
                    down(torch.zeros(rows, stacked.shape[1], dtype=dtype, device=stacked.device), stacked)
    rounding = _rounding_by_class()
    for layer in layers:
        for name in layer.lora_A:
            a, b = layer.lora_A[name].weight, layer.lora_B[name].weight
            dtype = _compute_dtype(layer)
            if not dtype.is_floating_point:
                continue
            key = (a.shape, b.shape, a.dtype, dtype, rounding[type(layer)])
            if key in seen or a.dtype != torch.float32 or not a.is_cuda or a.shape[0] & (a.shape[0] - 1):
                continue
            seen.add(key)
            for rows in (1, MAX_ROWS + 1):  # a decoding step's kernels, and a prefill's tiles
                x = torch.zeros(rows, a.shape[1], dtype=dtype, device=a.device)
                add_lora_(torch.zeros(rows, b.shape[0], dtype=dtype, device=a.device), x, a, b, 1.0, key[-1])


def _compute_dtype(layer) -> torch.dtype:
    """The dtype a LoRA layer's input arrives in (a 4-bit base's compute dtype; its weight's is uint8)."""
    return getattr(layer.base_layer, "compute_dtype", None) or layer.base_layer.weight.dtype


def install(layers: list, nf4: bool = False, siblings: list[list] = ()) -> None:
    """Route these LoRA layers (from `lora_layers`) through the kernels where a call qualifies (see
    `_lora_of`); every other call takes peft's own forward. With `nf4`, a one-token call on a 4-bit
    base that harness.engine.kernels.nf4_gemv runs adds the up product in that kernel's epilogue: two kernels for
    the adapted layer in all. `siblings` (from `sibling_groups`): groups whose down products are
    computed together when they read the same input (see `_SharedDown`). Instance attributes only:
    the caller restores them."""
    rounding = _rounding_by_class()
    shared = {}
    for group in siblings:
        if (together := _SharedDown.of(group)) is not None:
            shared.update(dict.fromkeys(group, together))
    for layer in layers:
        layer.forward = functools.partial(_forward, layer, layer.forward, rounding[type(layer)], nf4, shared.get(layer))


def sibling_groups(model, layers: list) -> list[list]:
    """The LoRA layers among `layers` that share a parent module and an input width, in groups of
    two or more: a transformer's q, k and v projections, which read the same hidden state."""
    chosen = set(map(id, layers))
    groups: dict = {}
    for name, module in model.named_modules():
        if id(module) in chosen:
            groups.setdefault((name.rpartition(".")[0], module.in_features), []).append(module)
    return [group for group in groups.values() if len(group) > 1]


class _SharedDown:
    """One down-product kernel for sibling LoRA layers that read the same input tensor.

    The first sibling called with a new input computes every sibling's A(x) from their A matrices
    stacked (kept across calls, beside the layers, so a captured graph can keep reading them); the
    others called with that same tensor object take their rows. Each row is the product `down`
    computes alone, so the results are the same bits. A sibling called with another input (o_proj
    beside q/k/v) computes the stack again for itself: no saving, no harm. Once every sibling has
    taken its rows, the input and the products are let go: held per layer until the layer's next
    call, a prefill's inputs would keep every layer's activations alive (8 GB for a 7B model's
    32,768-token pass)."""

    _stacks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def __init__(self, layers: list, matrices: list, stacked: torch.Tensor) -> None:
        self.matrices = dict(zip(layers, matrices))
        self.offsets, offset = {}, 0
        for layer, a in self.matrices.items():
            self.offsets[layer] = offset
            offset += a.shape[0]
        self.stacked = stacked
        self.x = self.h = None
        self.waiting: set = set()  # the siblings that have not yet taken their rows of h

    @classmethod
    def of(cls, layers: list):
        """The group's shared down products, or None when a sibling's LoRA is not one the kernels run."""
        matrices = []
        for layer in layers:
            lora = _lora_of(layer, None, {})
            if lora is None:
                return None
            matrices.append(lora[0])
        if len({a.device for a in matrices}) != 1:  # the widths are equal: see `sibling_groups`
            return None
        key = tuple(a.data_ptr() for a in matrices)
        kept = cls._stacks.get(layers[0])
        if kept is None or kept[0] != key:
            kept = cls._stacks[layers[0]] = (key, torch.cat(matrices).contiguous())
        return cls(layers, matrices, kept[1])

    def down(self, layer, a: torch.Tensor, x: torch.Tensor) -> torch.Tensor | None:
        """A(x) for `layer` (rows × rank, strided) when its A is the stacked one, else None."""
        if self.matrices.get(layer) is not a:
            return None
        if self.x is not x or layer not in self.waiting:
            self.x, self.h, self.waiting = x, down(x, self.stacked), set(self.matrices)
        offset = self.offsets[layer]
        h = self.h[:, offset : offset + a.shape[0]]
        self.waiting.discard(layer)
        if not self.waiting:
            self.x = self.h = None
        return h


def _rounding_by_class() -> dict:
    """LoRA layer class → whether peft rounds its LoRA output before the sum."""
    from peft.tuners.lora.layer import Linear

    classes = {Linear: False}
    try:
        from peft.tuners.lora import bnb

        classes.update(
            {
                cls: True
                for cls in (getattr(bnb, "Linear4bit", None), getattr(bnb, "Linear8bitLt", None))
                if cls is not None
            }
        )
    except ImportError:
        pass
    return classes


def _forward(module, original, round_first: bool, nf4: bool, shared, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    lora = _lora_of(module, x, kwargs)
    if lora is None:
        return original(x, *args, **kwargs)
    a, b, scale = lora
    h = shared.down(module, a, x) if shared is not None else None
    if nf4 and not args and not kwargs:
        from harness.engine.kernels import nf4_gemv

        if nf4_gemv.qualifies(module.base_layer, x):
            h = down(x, a) if h is None else h
            return nf4_gemv.nf4_matvec(module.base_layer, x, (h.reshape(-1), b, scale, round_first))
    result = module.base_layer(x, *args, **kwargs)
    return add_lora_(result, x, a, b, scale, round_first, h)


def _lora_of(module, x: torch.Tensor | None, kwargs: dict):
    """(A, B, scale) when this call is one plain LoRA without autograd, else None (x None: whether
    the layer's LoRA is one the kernels run, whatever the input)."""
    if x is not None and (
        torch.is_grad_enabled() or torch.is_autocast_enabled() or not x.is_cuda or not x.is_contiguous()
    ):
        return None
    if (
        module.disable_adapters
        or module.merged
        or kwargs.get("adapter_names") is not None
        or not getattr(module, "cast_input_dtype_enabled", True)
    ):
        return None
    active = [name for name in module.active_adapters if name in module.lora_A]
    if len(active) != 1 or active[0] in getattr(module, "lora_variant", {}):
        return None
    name = active[0]
    down, up, dropout = module.lora_A[name], module.lora_B[name], module.lora_dropout[name]
    a, b = down.weight, up.weight
    rank = a.shape[0]
    if (
        a.dtype != torch.float32
        or b.dtype != torch.float32
        or down.bias is not None
        or up.bias is not None
        or (dropout.training and getattr(dropout, "p", 0) > 0)
        or rank & (rank - 1)
        or not a.is_contiguous()
        or not b.is_contiguous()
        or not a.is_cuda
    ):
        return None
    return a, b, module.scaling[name]
