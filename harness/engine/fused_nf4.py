"""bitsandbytes' 4-bit layers and gated MLPs routed through the NF4 kernel (harness.engine.kernels.nf4_gemv)
for the duration of a fused forward (harness.engine.fused): a one-token call that the kernel runs goes
to it, every other call to the module's own forward."""

from __future__ import annotations

import functools

import torch

from harness.engine.kernels import nf4_gemv


def nf4_layers(model) -> list:
    """The bitsandbytes 4-bit linear layers of `model` (whichever `install` then routes per call)."""
    try:
        from bitsandbytes.nn import Linear4bit
    except ImportError:
        return []
    return [m for m in model.modules() if isinstance(m, Linear4bit)]


def install(layers: list) -> None:
    """Route these layers (from `nf4_layers`) through the kernel where a call qualifies (see
    `nf4_gemv.qualifies`); every other call takes bitsandbytes' forward. Instance attributes only: the
    caller restores them."""
    for layer in layers:
        layer.forward = functools.partial(_forward, layer, layer.forward)


def _forward(layer, original, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    if not args and not kwargs and nf4_gemv.qualifies(layer, x):
        return nf4_gemv.nf4_matvec(layer, x)
    return original(x, *args, **kwargs)


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
    call qualifies (see `nf4_gemv.glu_matches`), then their down projection; every other call takes the
    module's forward. Instance attributes only: the caller restores them."""
    for mlp in mlps:
        mlp.forward = functools.partial(_glu_forward, mlp, mlp.forward)


def _glu_forward(mlp, original, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    if not args and not kwargs and nf4_gemv.glu_matches(mlp.gate_proj, mlp.up_proj, x):
        return mlp.down_proj(nf4_gemv.nf4_matvec(mlp.gate_proj, x, up_layer=mlp.up_proj))
    return original(x, *args, **kwargs)
