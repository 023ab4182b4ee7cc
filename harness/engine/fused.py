"""Fused kernels inside the fast engine's forwards on a GPU: Liger's RMSNorm, rotary embedding and
SwiGLU, LoRA in two Triton kernels (harness.engine.kernels.lora, routed by harness.engine.fused_lora), and
one-token products with NF4 weights in one Triton kernel (harness.engine.kernels.nf4_gemv, routed by
harness.engine.fused_nf4) for decoding on the 4-bit base, with a gated MLP's gate and up projections and
its activation in one.

In transformers' modules each of Liger's three is a chain of elementwise kernels with float32
round trips: in a prefill they cost about as much GPU time as the matmuls, and in a one-token step
they are, with peft's six or seven kernels per LoRA, most of a step's kernels. Liger
computes each in one kernel, in float32, rounding once where the chain rounds after every
operation, so logits differ from the plain path's in the last bits, as any change of kernel does
(`harness eval --verify` measures what that does to answers). The patches are applied for the
duration of a forward and undone after, so the plain path and training never see them.
HARNESS_FUSED_KERNELS=0 switches them off.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys

from harness.model.families import is_encoder_decoder


def available(model) -> bool:
    """Whether any fused kernel applies: a CUDA model, not switched off with HARNESS_FUSED_KERNELS=0,
    and either of a family Liger patches (Liger installed) or with LoRA layers (Triton installed)."""
    return bool(describe(model))


def describe(model) -> str:
    """What `fused_kernels` applies to `model`, for the engine line ("" for nothing; see `available`).
    Nothing on an encoder-decoder: the static-cache decoder and the fast log-likelihoods, whose
    forwards the kernels serve, run decoder-only models."""
    if os.environ.get("HARNESS_FUSED_KERNELS", "1") == "0" or is_encoder_decoder(model.config):
        return ""
    try:
        if next(model.parameters()).device.type != "cuda":
            return ""
    except StopIteration:
        return ""
    parts = ["Liger's fused RMSNorm/rotary/SwiGLU kernels"] if _liger_applies(model) else []
    parts += ["LoRA in two kernels per layer"] if _lora_layers(model) else []
    parts += ["NF4 matrix-vector products in one kernel in one-token steps"] if _nf4_layers(model) else []
    return ", ".join(parts)


@contextlib.contextmanager
def fused_kernels(model):
    """`model` computing with the fused kernels that apply to it; everything put back on exit.

    Liger patches the model's modules (bound `forward`s and attributes) and its modeling module's
    globals, the LoRA kernels the LoRA layers' `forward`s; all are recorded before and restored after."""
    inner = _inner(model)
    modeling = sys.modules[type(inner).__module__]
    saved_globals = dict(vars(modeling))
    saved = {m: dict(m.__dict__) for m in inner.modules()}
    try:
        if _liger_applies(model):
            with _quiet():  # Liger looks for its backends at a kernel's first call
                from liger_kernel.transformers import _apply_liger_kernel_to_instance

                _apply_liger_kernel_to_instance(
                    model=inner,
                    rope=True,
                    rms_norm=True,
                    swiglu=True,
                    cross_entropy=False,
                    fused_linear_cross_entropy=False,
                )
                from liger_kernel.transformers.rope import liger_rotary_pos_emb

            if vars(modeling).get("apply_rotary_pos_emb") is liger_rotary_pos_emb:
                modeling.apply_rotary_pos_emb = _rope_as_one_sequence
        nf4_layers = _nf4_layers(model)
        if nf4_layers:
            from harness.engine import fused_nf4

            fused_nf4.install(nf4_layers)
            fused_nf4.install_glu(fused_nf4.glu_mlps(inner))
        if layers := _lora_layers(model):
            from harness.engine import fused_lora

            fused_lora.install(layers, nf4=bool(nf4_layers), siblings=fused_lora.sibling_groups(inner, layers))
        yield model
    finally:
        for name, value in saved_globals.items():
            if vars(modeling).get(name) is not value:
                setattr(modeling, name, value)
        for module, before in saved.items():
            for key in [k for k in module.__dict__ if k not in before]:
                del module.__dict__[key]
            module.__dict__.update(before)


def _rope_as_one_sequence(q, k, cos, sin, position_ids=None, unsqueeze_dim=1):
    """Liger's rotary embedding with a batch laid end to end as one sequence of batch × length rows.

    Liger's kernel takes the batch size as a compile-time constant that it never computes with, so
    each new batch size (a length-sorted eval's last batch, every shrink of a batched decode) is a
    new compilation, seconds of stall per size on a cold Triton cache. As one sequence, every
    call reaches the same compilations as a batch of one. Each row is rotated by its own cos/sin
    row either way, so the results are the same bits."""
    from liger_kernel.transformers.rope import liger_rotary_pos_emb

    batch, length = q.shape[0], q.shape[2]
    if batch == 1 or unsqueeze_dim != 1 or cos.ndim != 3 or cos.shape[0] not in (1, batch):
        return liger_rotary_pos_emb(q, k, cos, sin, position_ids, unsqueeze_dim)

    def rows(t):  # (batch, heads, length, dim) -> (1, heads, batch * length, dim)
        return t.transpose(1, 2).reshape(1, batch * length, t.shape[1], t.shape[3]).transpose(1, 2)

    def table(t):  # (1 or batch, length, dim) -> (1, batch * length, dim)
        return t.expand(batch, -1, -1).reshape(1, batch * length, t.shape[2])

    def back(t):
        return t.transpose(1, 2).reshape(batch, length, t.shape[1], t.shape[3]).transpose(1, 2)

    q, k = liger_rotary_pos_emb(rows(q), rows(k), table(cos), table(sin))
    return back(q), back(k)


def _liger_applies(model) -> bool:
    from harness.runtime.env import liger_available

    if not liger_available():
        return False
    with _quiet():
        from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN

    return getattr(getattr(_inner(model), "config", None), "model_type", None) in MODEL_TYPE_TO_APPLY_LIGER_FN


def _lora_layers(model) -> list:
    """The model's LoRA linear layers, where Triton is installed to run them fused."""
    if not triton_installed():
        return []
    from harness.engine.fused_lora import lora_layers

    return lora_layers(_inner(model))


def _nf4_layers(model) -> list:
    """The model's 4-bit linear layers, where Triton is installed to run their one-token products."""
    if not triton_installed():
        return []
    from harness.engine.fused_nf4 import nf4_layers

    return nf4_layers(_inner(model))


def triton_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("triton") is not None


@contextlib.contextmanager
def _quiet():
    """Liger logs each patch at INFO, and on import every backend the machine lacks."""
    logger = logging.getLogger("liger_kernel")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _inner(model):
    """The transformers model under a peft wrapper."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def warm_up(model) -> float:
    """Compile the fused kernels now (seconds taken; 0 when they do not apply), so no timed
    batch pays for it.

    Triton compiles a kernel per specialisation of its integer arguments (a row count of 1, a
    multiple of 16, any other); three tiny forwards reach all three of Liger's (any batch reaches
    the same ones: see `_rope_as_one_sequence`). The LoRA and NF4 kernels are compiled for their
    layers' shapes on their own, since the forwards may run with the adapters off or a dense base."""
    import time

    import torch

    if not available(model):
        return 0.0
    started = time.perf_counter()
    device = next(model.parameters()).device
    with torch.inference_mode(), fused_kernels(model):
        for length in (1, 16, 17):
            model(input_ids=torch.ones((1, length), dtype=torch.long, device=device), use_cache=False)
    if layers := _lora_layers(model):
        from harness.engine.fused_lora import sibling_groups
        from harness.engine.fused_lora import warm_up as lora_warm_up

        lora_warm_up(layers, sibling_groups(_inner(model), layers))
    if layers := _nf4_layers(model):
        from harness.engine.kernels.nf4_gemv import warm_up as nf4_warm_up

        nf4_warm_up(layers)
    torch.cuda.synchronize(device)
    return time.perf_counter() - started
