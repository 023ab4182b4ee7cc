"""Dense weights for evaluation: the 4-bit base dequantised once, for every model of a run.

For evaluation a model is a fixed function, so dequantising every NF4 matrix in every forward
(what bitsandbytes does) is repeated work. Inside `dense_model` each quantized linear layer
(inside a peft LoRA wrapper or not) is swapped for a plain one holding exactly the weight
bitsandbytes would dequantize to; on exit the originals come back, so the NF4 weights stay
the source of truth. The LoRA layers stay unmerged: their products are computed as peft
computes them, so outputs match the 4-bit path (a bf16 merge would round W + BA and move
logits by ~1e-2), at the cost of a few small matmuls. When the bf16 copy does not fit in
memory the caller keeps the 4-bit path.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

QUANTIZED = {"Linear4bit", "Linear8bitLt"}


@dataclass(frozen=True)
class DensePlan:
    fits: bool
    bytes_needed: int
    bytes_free: int | None
    reason: str  # why the dense path is not taken ("" when it is)


def is_quantized_linear(module) -> bool:
    """A bitsandbytes layer itself (peft's LoRA wrappers of one share its class name, not its module)."""
    cls = type(module)
    return cls.__name__ in QUANTIZED and cls.__module__.startswith("bitsandbytes")


def dequantized_weight(module):
    """The weight a bitsandbytes layer multiplies with (what its forward dequantizes), or a plain layer's."""
    if not is_quantized_linear(module):
        return module.weight
    from peft.utils.integrations import dequantize_bnb_weight

    return dequantize_bnb_weight(module.weight, state=getattr(module.weight, "quant_state", None) or module.state)


def plain_linear(source, weight, dtype):
    """A frozen torch Linear with `weight` (and `source`'s bias), in `dtype`."""
    import torch

    layer = torch.nn.Linear(source.in_features, source.out_features, bias=source.bias is not None,
                            dtype=dtype, device=weight.device)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if source.bias is not None:
            layer.bias.copy_(source.bias)
    layer.requires_grad_(False)
    return layer


def _targets(model):
    """(parent, child name, module) for every quantized linear layer, LoRA-wrapped or not."""
    found = []
    for name, module in model.named_modules():
        if is_quantized_linear(module):
            parent_name, _, child = name.rpartition(".")
            found.append((model.get_submodule(parent_name) if parent_name else model, child, module))
    return found


def plan(model, dtype) -> DensePlan:
    import torch

    size = torch.tensor([], dtype=dtype).element_size()
    targets = _targets(model)
    needed = sum(module.in_features * module.out_features * size for _, _, module in targets)
    if not targets:  # nothing to dequantize: the model already computes densely
        return DensePlan(True, 0, None, "")
    device = next(model.parameters()).device
    if device.type != "cuda":
        return DensePlan(True, needed, None, "")
    free, _total = torch.cuda.mem_get_info(device)
    # Keep room beside the copy for the KV cache and activations of a useful batch.
    headroom = max(2 << 30, int(0.15 * _total))
    if needed + headroom > free:
        return DensePlan(False, needed, free, f"a {dtype_name(dtype)} copy needs {needed / 2**30:.1f} GiB "
                                              f"and {free / 2**30:.1f} GiB are free")
    return DensePlan(True, needed, free, "")


def dtype_name(dtype) -> str:
    return str(dtype).replace("torch.", "")


@contextlib.contextmanager
def dense_model(model, dtype):
    """Yield `model` with its quantized linears replaced by dense ones; put back on exit."""
    import torch

    swapped = []
    try:
        with torch.no_grad():
            for parent, child, module in _targets(model):
                setattr(parent, child, plain_linear(module, dequantized_weight(module).to(dtype), dtype))
                swapped.append((parent, child, module))
        yield model
    finally:
        for parent, child, module in reversed(swapped):
            setattr(parent, child, module)
        swapped.clear()
        _free_cuda()


def _free_cuda() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
