"""Swap a 4-bit base's frozen linear layers for their dequantized weights (`training.dequantize_base`).

bitsandbytes keeps NF4/FP4 weights packed and, on every forward and backward of a training step,
dequantizes them to the compute dtype before the matmul (for micro-steps of more than a few hundred
tokens its CUDA, CPU and default kernels all do exactly this). Doing that once, up front, leaves the
math of QLoRA unchanged: the same frozen weights, LoRA still learning against the quantized base, an
adapter with the same module names. It costs the weights' compute-dtype size in memory, and saves a
dequantization per layer per forward, backward and recomputation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class DequantizedLinear(torch.nn.Linear):
    """A frozen linear layer holding what bitsandbytes' Linear4bit multiplies with.

    It keeps Linear4bit's dtype contract: the input is cast to the weight's dtype and the output back to
    the input's, so a float32 residual stream (peft's prepare_model_for_kbit_training upcasts norms and
    embeddings) stays float32 exactly as with the 4-bit layer. A torch.nn.Linear subclass, so peft wraps
    it with its ordinary LoRA layer.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(self.weight.dtype)
        return F.linear(x.to(self.weight.dtype), self.weight, bias).to(x.dtype)


def dequantized_bytes(model, dtype: torch.dtype) -> int:
    """What the 4-bit linear layers would take once dequantized to `dtype`."""
    size = torch.finfo(dtype).bits // 8
    return sum(m.in_features * m.out_features * size for m in _linear4bit_modules(model))


def dequantized_layer(module, dtype: torch.dtype) -> DequantizedLinear:
    """A DequantizedLinear holding exactly the weight bitsandbytes' `module` multiplies with."""
    import bitsandbytes.functional as bnbf

    weight = module.weight
    dense = bnbf.dequantize_4bit(weight.data, weight.quant_state).to(dtype)
    layer = DequantizedLinear(module.in_features, module.out_features, bias=module.bias is not None, device="meta")
    layer.weight = torch.nn.Parameter(dense, requires_grad=False)
    if module.bias is not None:
        layer.bias = torch.nn.Parameter(module.bias.data.clone(), requires_grad=False)
    return layer


def swap_in_dequantized(model, dtype: torch.dtype) -> list[tuple]:
    """Replace every bitsandbytes Linear4bit in `model` by a DequantizedLinear; returns what
    `restore` needs to put the 4-bit layers back (evaluation swaps per run, training for good)."""
    swapped = []
    for name, module in list(_named_linear4bit(model)):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, dequantized_layer(module, dtype))
        swapped.append((parent, child, module))
    return swapped


def restore(swapped: list[tuple]) -> None:
    for parent, child, module in reversed(swapped):
        setattr(parent, child, module)
    swapped.clear()


def dequantize_linear4bit(model, dtype: torch.dtype) -> int:
    """Replace every bitsandbytes Linear4bit in `model` (in place, for good) by a DequantizedLinear;
    returns how many.

    Call it after peft's prepare_model_for_kbit_training (which would upcast the new weights to float32)
    and before get_peft_model. Works on any device bitsandbytes dequantizes on (CUDA and CPU).
    """
    return len(swap_in_dequantized(model, dtype))


def _named_linear4bit(model):
    import bitsandbytes as bnb

    return ((n, m) for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit))


def _linear4bit_modules(model):
    return (m for _, m in _named_linear4bit(model))
