"""One-token products with NF4 weights in one Triton kernel, for decoding on the 4-bit base.

In a one-token decoding step every linear layer is a matrix-vector product, bound by reading its
packed 4-bit weights. bitsandbytes' kernel reads them at about a third of the memory's bandwidth,
and was most of a batch-1 step. The work per byte is the lookup of two 4-bit codes in the 16-value
NF4 table; here it is done with PTX byte permutes (`prmt`), which look up four codes at once in a
table held in two registers, so the kernel reads the same bytes faster (benchmarks/RESULTS.md).

The arithmetic: each code's NF4 value in bf16 (bitsandbytes' kernel holds its table in bf16 too)
times the input, in fp32, summed per quantization block and multiplied by the block's scale, which
is computed as bitsandbytes computes it (with double quantization: code2[q] · absmax2 + offset, in
fp32). bitsandbytes rounds each weight and each product to bf16 before its fp32 sum, this kernel
does not, so the result is closer to the exact product and can differ from bitsandbytes' in the
last bits, as any change of kernel does (`harness eval --verify` measures what that does to answers).
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

# bitsandbytes' NF4 code table (bitsandbytes.functional.get_4bit_type("nf4")).
NF4 = (
    -1.0,
    -0.6961928009986877,
    -0.5250730514526367,
    -0.39491748809814453,
    -0.28444138169288635,
    -0.18477343022823334,
    -0.09105003625154495,
    0.0,
    0.07958029955625534,
    0.16093020141124725,
    0.24611230194568634,
    0.33791524171829224,
    0.44070982933044434,
    0.5626170039176941,
    0.7229568362236023,
    1.0,
)
# Output rows per program and warps: the fastest measured as a 7B step runs the kernel (32 layers'
# distinct weights, so nothing is served from L2); the figures are in benchmarks/RESULTS.md.
ROWS = 4
WARPS = 4


def _lookup_asm() -> str:
    """PTX taking four packed bytes ($4) to four bf16 pairs ($0-$3): pair i holds byte i's high
    nibble's NF4 value in its low half and its low nibble's in its high half (bitsandbytes packs the
    even element in the high nibble, so a pair lines up with the input's bf16 pair).

    `prmt` picks four bytes out of eight by four 3-bit selectors, so a 16-entry table of one byte
    per entry is two lookups (entries 0-7 and 8-15) and a third `prmt` that takes each byte from
    the one or the other by the code's fourth bit; bf16 needs two such tables (low and high bytes)."""
    bits = [int(v) & 0xFFFF for v in torch.tensor(NF4).to(torch.bfloat16).view(torch.int16).tolist()]

    def table(shift: int, first: int) -> tuple[int, int]:
        b = [(bits[first + i] >> shift) & 0xFF for i in range(8)]
        return b[0] | b[1] << 8 | b[2] << 16 | b[3] << 24, b[4] | b[5] << 8 | b[6] << 16 | b[7] << 24

    regs = [*table(0, 0), *table(0, 8), *table(8, 0), *table(8, 8)]

    def four_codes(src: str, first: str, second: str) -> str:
        # Nibbles 0-3 of src are the codes of elements 1, 0, 3, 2; `s` selects within a half
        # table, `m` takes byte k from the low half's result (k) or the high half's (4 + k).
        return f"""
  and.b32 s, {src}, 0x7777;
  shr.b32 m, {src}, 1;
  and.b32 m, m, 0x4444;
  or.b32 m, m, 0x3210;
  prmt.b32 l, t0, t1, s;
  prmt.b32 u, t2, t3, s;
  prmt.b32 lo, l, u, m;
  prmt.b32 l, t4, t5, s;
  prmt.b32 u, t6, t7, s;
  prmt.b32 hi, l, u, m;
  prmt.b32 {first}, lo, hi, 0x4051;
  prmt.b32 {second}, lo, hi, 0x6273;"""

    moves = "".join(f" mov.b32 t{i}, {value:#x};" for i, value in enumerate(regs))
    return (
        "{\n .reg .b32 s, m, l, u, lo, hi, t, t0, t1, t2, t3, t4, t5, t6, t7;\n"
        + moves
        + four_codes("$4", "$0", "$1")
        + "\n  shr.b32 t, $4, 16;"
        + four_codes("t", "$2", "$3")
        + "\n}"
    )


LOOKUP = _lookup_asm()


@triton.jit
def _row_products(
    x_ptr,
    w_ptr,
    absmax_ptr,
    code2_ptr,
    absmax2_ptr,
    offset_ptr,
    rows,
    K,
    BLOCKSIZE: tl.constexpr,
    NESTED: tl.constexpr,
    BLOCK2: tl.constexpr,
    ROWS: tl.constexpr,
    HALF: tl.constexpr,
    MASKED: tl.constexpr,
    ASM: tl.constexpr,
):
    """Σ_blocks scale(n, block) · Σ_{k in block} nf4[code(n, k)] · x[k] in fp32 for these rows; x as
    bf16 pairs (int32), the weights as bitsandbytes packs them (two codes per byte, row-major)."""
    BYTES: tl.constexpr = BLOCKSIZE // 2  # bytes per quantization block
    NB: tl.constexpr = HALF // BYTES
    cols = tl.arange(0, HALF)
    blocks = tl.arange(0, NB)
    row_bytes = rows.to(tl.int64) * (K // 2)
    row_blocks = rows.to(tl.int64) * (K // BLOCKSIZE)
    acc = tl.zeros([ROWS, NB], dtype=tl.float32)
    if NESTED:
        offset = tl.load(offset_ptr)
    for start in range(0, K // 2, HALF):  # in bytes
        index = row_blocks[:, None] + start // BYTES + blocks[None, :]
        if MASKED:
            inside = start + cols < K // 2
            packed = tl.load(w_ptr + row_bytes[:, None] + start + cols[None, :], mask=inside[None, :], other=0)
            xp = tl.load(x_ptr + start + cols, mask=inside, other=0)
            block_in = (start // BYTES + blocks < K // BLOCKSIZE)[None, :]
            if NESTED:
                q = tl.load(absmax_ptr + index, mask=block_in, other=0).to(tl.int32)
                scale = tl.load(code2_ptr + q) * tl.load(absmax2_ptr + index // BLOCK2, mask=block_in, other=0.0)
            else:
                scale = tl.load(absmax_ptr + index, mask=block_in, other=0.0)
        else:
            packed = tl.load(w_ptr + row_bytes[:, None] + start + cols[None, :])
            xp = tl.load(x_ptr + start + cols)
            if NESTED:
                scale = tl.load(code2_ptr + tl.load(absmax_ptr + index).to(tl.int32)) * tl.load(
                    absmax2_ptr + index // BLOCK2
                )
            else:
                scale = tl.load(absmax_ptr + index)
        if NESTED:
            scale += offset
        pair = tl.inline_asm_elementwise(ASM, "=r,=r,=r,=r,r", [packed], dtype=tl.uint32, is_pure=True, pack=4)
        xp = xp.to(tl.uint32, bitcast=True)
        part = (pair << 16).to(tl.float32, bitcast=True) * (xp << 16).to(tl.float32, bitcast=True)[None, :] + (
            pair & 0xFFFF0000
        ).to(tl.float32, bitcast=True) * (xp & 0xFFFF0000).to(tl.float32, bitcast=True)[None, :]
        acc += tl.sum(tl.reshape(part, [ROWS, NB, BYTES]), axis=2) * scale
    return tl.sum(acc, axis=1)


@triton.jit
def _gemv(
    x_ptr,
    w_ptr,
    absmax_ptr,
    code2_ptr,
    absmax2_ptr,
    offset_ptr,
    w_up_ptr,
    absmax_up_ptr,
    code2_up_ptr,
    absmax2_up_ptr,
    offset_up_ptr,
    y_ptr,
    h_ptr,
    b_ptr,
    lora_scale,
    N,
    K,
    BLOCKSIZE: tl.constexpr,
    NESTED: tl.constexpr,
    BLOCK2: tl.constexpr,
    ROWS: tl.constexpr,
    HALF: tl.constexpr,
    MASKED: tl.constexpr,
    ASM: tl.constexpr,
    GLU: tl.constexpr,
    RANK: tl.constexpr,
    ROUND_FIRST: tl.constexpr,
):
    """y = bf16(W x) for one row x (see `_row_products`). GLU: y = bf16(silu(bf16(W x))) · bf16(W_up x),
    a gated MLP's activation as Liger's SwiGLU kernel computes it from the two projections. With
    RANK > 0, plus a LoRA's up product as lora_kernels._up_add adds it: (Σ_r B[n, r] · h[r]) · lora_scale."""
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    row_in = rows < N
    rows = tl.where(row_in, rows, 0)
    y = _row_products(
        x_ptr,
        w_ptr,
        absmax_ptr,
        code2_ptr,
        absmax2_ptr,
        offset_ptr,
        rows,
        K,
        BLOCKSIZE,
        NESTED,
        BLOCK2,
        ROWS,
        HALF,
        MASKED,
        ASM,
    ).to(tl.bfloat16)
    if GLU:
        up = _row_products(
            x_ptr,
            w_up_ptr,
            absmax_up_ptr,
            code2_up_ptr,
            absmax2_up_ptr,
            offset_up_ptr,
            rows,
            K,
            BLOCKSIZE,
            NESTED,
            BLOCK2,
            ROWS,
            HALF,
            MASKED,
            ASM,
        ).to(tl.bfloat16)
        gate = y.to(tl.float32)
        # a product of two bf16 values is exact in fp32, so this rounds once, as a bf16 product does
        y = ((gate * tl.sigmoid(gate)).to(tl.bfloat16).to(tl.float32) * up.to(tl.float32)).to(tl.bfloat16)
    if RANK > 0:
        ranks = tl.arange(0, RANK)
        lora = (
            tl.sum(tl.load(b_ptr + rows[:, None] * RANK + ranks[None, :]) * tl.load(h_ptr + ranks)[None, :], axis=1)
            * lora_scale
        )
        if ROUND_FIRST:
            lora = lora.to(tl.bfloat16).to(tl.float32)
        y = (y.to(tl.float32) + lora).to(tl.bfloat16)
    tl.store(y_ptr + rows, y, mask=row_in)


def nf4_layers(model) -> list:
    """The bitsandbytes 4-bit linear layers of `model` (whichever `install` then routes per call)."""
    try:
        from bitsandbytes.nn import Linear4bit
    except ImportError:
        return []
    return [m for m in model.modules() if isinstance(m, Linear4bit)]


def install(layers: list) -> None:
    """Route these layers (from `nf4_layers`) through the kernel where a call qualifies (see
    `qualifies`); every other call takes bitsandbytes' forward. Instance attributes only: the
    caller restores them."""
    for layer in layers:
        layer.forward = functools.partial(_forward, layer, layer.forward)


def warm_up(layers: list) -> None:
    """Compile the kernel for the layers' shapes now, not inside a timed step."""
    seen = set()
    for layer in layers:
        state = getattr(layer.weight, "quant_state", None)
        if state is None or not _weights_qualify(layer, state) or not layer.weight.is_cuda:
            continue
        key = (_config(state), state.blocksize, state.nested, state.shape[1] % 16 == 0, state.shape[0] % 16 == 0)
        if key not in seen:
            seen.add(key)
            nf4_matvec(layer, torch.zeros(state.shape[1], dtype=torch.bfloat16, device=layer.weight.device))


def nf4_matvec(layer, x: torch.Tensor, lora: tuple | None = None, up_layer=None) -> torch.Tensor:
    """`layer(x)` for one bf16 row `x` (see `qualifies`), shaped like x with the output width.

    lora = (h, B, scale, round_first): also add a LoRA whose down product h (fp32, rank) is
    computed, as harness.engine.kernels.lora adds it (B: fp32, out × rank, rank a power of two).
    up_layer: a gated MLP's up projection beside `layer`, its gate (see `glu_matches`): return the
    activation silu(layer(x)) · up_layer(x) instead."""
    state = layer.weight.quant_state
    n, k = state.shape
    y = torch.empty(n, dtype=torch.bfloat16, device=x.device)
    half, masked = _config(state)
    up = up_layer if up_layer is not None else layer
    h, b, scale, round_first = lora if lora is not None else (y, y, 0.0, False)
    _gemv[(triton.cdiv(n, ROWS),)](
        x.view(torch.int32),
        *_weights(layer),
        *_weights(up),
        y,
        h,
        b,
        float(scale),
        n,
        k,
        BLOCKSIZE=state.blocksize,
        NESTED=state.nested,
        BLOCK2=state.state2.blocksize if state.nested else 1,
        ROWS=ROWS,
        HALF=half,
        MASKED=masked,
        ASM=LOOKUP,
        GLU=up_layer is not None,
        RANK=0 if lora is None else b.shape[1],
        ROUND_FIRST=round_first,
        num_warps=WARPS,
    )
    return y.view(*x.shape[:-1], n)


def _weights(layer) -> tuple:
    """What the kernel reads of a layer: packed bytes, block scales (8-bit with double quantization),
    the nested code table, the nested scales and the offset (repeats where there is no nesting)."""
    state = layer.weight.quant_state
    if state.nested:
        return layer.weight.data, state.absmax, state.state2.code, state.state2.absmax, state.offset
    return (layer.weight.data,) + (state.absmax,) * 4


def glu_mlps(model) -> list:
    """`model`'s gated MLPs with SiLU (Llama's, Mistral's, Qwen's: gate_proj, up_proj, down_proj)
    whose gate and up projections are both plain 4-bit layers (no LoRA on them)."""
    try:
        from bitsandbytes.nn import Linear4bit
    except ImportError:
        return []
    return [
        m
        for m in model.modules()
        if isinstance(getattr(m, "gate_proj", None), Linear4bit)
        and isinstance(getattr(m, "up_proj", None), Linear4bit)
        and hasattr(m, "down_proj")
        and _is_silu(getattr(m, "act_fn", None))
    ]


def _is_silu(act) -> bool:
    """torch's SiLU, or transformers' (SiLUActivation: F.silu, unless a hub kernel replaced it)."""
    return type(act) is torch.nn.SiLU or (
        type(act).__name__ == "SiLUActivation" and type(act).__module__ == "transformers.activations"
    )


def install_glu(mlps: list) -> None:
    """Route these MLPs (from `glu_mlps`) through one kernel for gate, up and the activation where a
    call qualifies (see `glu_matches`), then their down projection; every other call takes the
    module's forward. Instance attributes only: the caller restores them."""
    for mlp in mlps:
        mlp.forward = functools.partial(_glu_forward, mlp, mlp.forward)


def glu_matches(gate, up, x: torch.Tensor) -> bool:
    """Whether gate and up can run in one kernel on x: each qualifies, with the same layout."""
    if not (qualifies(gate, x) and qualifies(up, x)):
        return False
    a, b = gate.weight.quant_state, up.weight.quant_state
    return (
        a.shape == b.shape
        and a.blocksize == b.blocksize
        and a.nested == b.nested
        and (not a.nested or a.state2.blocksize == b.state2.blocksize)
    )


def _glu_forward(mlp, original, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    if not args and not kwargs and glu_matches(mlp.gate_proj, mlp.up_proj, x):
        return mlp.down_proj(nf4_matvec(mlp.gate_proj, x, up_layer=mlp.up_proj))
    return original(x, *args, **kwargs)


def _config(state) -> tuple[int, bool]:
    """(bytes per row per loop step, whether the last step is partial). 1,024 bytes measured best;
    a partial step costs less than the short steps a width like 11,008 (5,504 bytes) divides into."""
    return 1024, (state.shape[1] // 2) % 1024 != 0


def _forward(layer, original, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    if not args and not kwargs and qualifies(layer, x):
        return nf4_matvec(layer, x)
    return original(x, *args, **kwargs)


def qualifies(layer, x: torch.Tensor) -> bool:
    """One contiguous bf16 row on CUDA, no autograd, and weights the kernel reads."""
    state = getattr(layer.weight, "quant_state", None)
    return (
        state is not None
        and x.is_cuda
        and x.dtype == torch.bfloat16
        and x.numel() == x.shape[-1]
        and x.is_contiguous()
        and x.data_ptr() % 16 == 0
        and not torch.is_grad_enabled()
        and not torch.is_autocast_enabled()
        and _weights_qualify(layer, state)
        and x.shape[-1] == state.shape[1]
    )


def _weights_qualify(layer, state) -> bool:
    """NF4 in the default layout, bf16 compute, no bias, whole blocks per row."""
    n, k = state.shape
    nested_ok = not state.nested or (
        state.absmax.dtype == torch.uint8
        and state.state2.absmax.dtype == torch.float32
        and state.state2.code.dtype == torch.float32
        and torch.is_tensor(state.offset)
        and state.offset.is_cuda
    )
    return (
        state.quant_type == "nf4"
        and getattr(layer, "compute_dtype", None) == torch.bfloat16
        and layer.bias is None
        and state.blocksize in (32, 64, 128, 256)
        and k % state.blocksize == 0
        and k % 8 == 0
        and layer.weight.dtype == torch.uint8
        and layer.weight.numel() * 2 == n * k
        and layer.weight.is_contiguous()
        and nested_ok
        and (state.nested or state.absmax.dtype == torch.float32)
    )
