"""Dequantize a 4-bit (or 8-bit) base's linear layers: the weights bitsandbytes multiplies with, computed once.

bitsandbytes keeps NF4/FP4 weights packed and, on every forward and backward of a training step,
dequantizes them to the compute dtype before the matmul (for micro-steps of more than a few hundred
tokens its CUDA, CPU and default kernels all do exactly this). Doing that once, up front, leaves the
math of QLoRA unchanged: the same frozen weights, LoRA still learning against the quantized base, an
adapter with the same module names. It costs the weights' compute-dtype size in memory, and saves a
dequantization per layer per forward, backward and recomputation (`training.dequantize_base`; the fast
engine's dense base, harness.model.dense). `dequantize_for_export` does the same for `harness merge
--dequantize`, into the layers' own classes, so that the export loads without bitsandbytes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from harness.model.families import was_conv1d


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


def dequantized_weight(module) -> torch.Tensor:
    """The weight a bitsandbytes 4-bit or 8-bit linear layer multiplies with (for 4-bit layers,
    bitsandbytes' own dequantization), in the dtype its quantization keeps."""
    from peft.utils.integrations import dequantize_bnb_weight

    return dequantize_bnb_weight(module.weight, state=getattr(module.weight, "quant_state", None) or module.state)


def dequantized_layer(module, dtype: torch.dtype) -> DequantizedLinear:
    """A DequantizedLinear holding exactly the weight bitsandbytes' `module` multiplies with."""
    dense = dequantized_weight(module).to(dtype)
    layer = DequantizedLinear(module.in_features, module.out_features, bias=module.bias is not None, device="meta")
    layer.weight = torch.nn.Parameter(dense, requires_grad=False)
    if module.bias is not None:
        layer.bias = torch.nn.Parameter(module.bias.data.clone(), requires_grad=False)
    return layer


def swap_in_dequantized(model, dtype: torch.dtype) -> list[tuple]:
    """Replace every bitsandbytes Linear4bit in `model` by a DequantizedLinear; returns what
    `restore` needs to put the 4-bit layers back (evaluation swaps per run, training for good)."""
    import bitsandbytes as bnb

    return _swap(model, lambda m: isinstance(m, bnb.nn.Linear4bit), lambda m: dequantized_layer(m, dtype))


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


def dequantize_for_export(model, dtype: torch.dtype) -> None:
    """Replace every bitsandbytes 4-bit/8-bit linear layer by a plain one holding its dequantized weights,
    in the layer's own class: a GPT-2 Conv1D (quantized as a Linear4bit of the transposed weight) turns back
    into a Conv1D, so the export holds the layout its architecture loads."""
    _swap(model, lambda m: type(m).__name__ in {"Linear4bit", "Linear8bitLt"}, lambda m: _export_layer(m, dtype))
    # The model is no longer quantized: drop every marker, or transformers refuses to cast or
    # saves a quantization_config that would make loaders quantize the export again.
    for attr in ("hf_quantizer", "quantization_method"):
        if hasattr(model, attr):
            setattr(model, attr, None)
    for attr in ("is_quantized", "is_loaded_in_4bit", "is_loaded_in_8bit"):
        if hasattr(model, attr):
            setattr(model, attr, False)
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    model.to(dtype)


def _export_layer(module, dtype: torch.dtype):
    from transformers.pytorch_utils import Conv1D

    weight = dequantized_weight(module)
    if was_conv1d(module):
        plain = Conv1D(module.out_features, module.in_features).to(dtype=dtype, device=weight.device)
        weight = weight.T
    else:
        plain = torch.nn.Linear(
            module.in_features, module.out_features, bias=module.bias is not None, dtype=dtype, device=weight.device
        )
    with torch.no_grad():
        plain.weight.copy_(weight.to(dtype))
        if module.bias is not None:
            plain.bias.copy_(module.bias.to(dtype))
    return plain


def _swap(model, chosen, make) -> list[tuple]:
    """Replace each module of `model` that `chosen` picks by `make(module)`; returns (parent, name,
    module) for each, what `restore` puts back."""
    swapped = []
    for name, module in [(n, m) for n, m in model.named_modules() if chosen(m)]:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, make(module))
        swapped.append((parent, child, module))
    return swapped


def _linear4bit_modules(model):
    import bitsandbytes as bnb

    return (m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit))
