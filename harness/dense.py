"""Dense weights for evaluation: the 4-bit base dequantised once, the adapter's LoRA merged in.

For evaluation a model is a fixed function, so dequantising every NF4 matrix in every forward
(what bitsandbytes does) and adding each LoRA product separately (what peft does) is repeated
work. Inside `dense_model` the quantized and LoRA-wrapped linear layers are swapped for plain
ones holding `dequantize(W) + scale·B·A` in the compute dtype; on exit the originals come back,
so the NF4 weights stay the source of truth and switching model is a re-dequantisation, which is
exact. When the bf16 copy does not fit in memory the caller keeps the 4-bit path.
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


def dequantized_weight(module):
    """The weight a bitsandbytes layer multiplies with (what its forward dequantizes), or a plain layer's."""
    if type(module).__name__ not in QUANTIZED:
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
    """(parent, child name, module) for every layer the dense copy replaces, outermost first."""
    from peft.tuners.lora import LoraLayer

    found = []
    skip: tuple[str, ...] = ()
    for name, module in model.named_modules():
        if skip and name.startswith(skip):
            continue
        if isinstance(module, LoraLayer) or type(module).__name__ in QUANTIZED:
            parent_name, _, child = name.rpartition(".")
            found.append((model.get_submodule(parent_name) if parent_name else model, child, module))
            skip = (name + ".",)
    return found


def unsupported(model) -> str:
    """Why LoRA layers of this model cannot be merged into a dense copy ("" when they can)."""
    from peft.tuners.lora import LoraLayer

    for name, module in model.named_modules():
        if isinstance(module, LoraLayer):
            if any(getattr(module, "use_dora", {}).values()):
                return f"{name} uses DoRA"
            if any(getattr(module, "lora_bias", {}).values()):
                return f"{name} has a LoRA bias"
            if not hasattr(module.get_base_layer(), "in_features"):
                return f"{name} wraps a {type(module.get_base_layer()).__name__}, not a linear layer"
    return ""


def plan(model, dtype) -> DensePlan:
    import torch

    size = torch.tensor([], dtype=dtype).element_size()
    needed = 0
    for _, _, module in _targets(model):
        base = module.get_base_layer() if hasattr(module, "get_base_layer") else module
        needed += base.in_features * base.out_features * size
    why = unsupported(model)
    if why:
        return DensePlan(False, needed, None, why)
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
def dense_model(model, adapter: str | None, dtype):
    """Yield `model` with its quantized/LoRA linears replaced by dense ones computing `adapter`
    (None: the base alone); the original layers are put back on exit."""
    import torch

    swapped = []
    try:
        with torch.no_grad():
            for parent, child, module in _targets(model):
                base = module.get_base_layer() if hasattr(module, "get_base_layer") else module
                weight = dequantized_weight(base).to(torch.float32)
                if adapter is not None and adapter in getattr(module, "lora_A", {}):
                    weight = weight + module.get_delta_weight(adapter).to(device=weight.device, dtype=torch.float32)
                setattr(parent, child, plain_linear(base, weight.to(dtype), dtype))
                swapped.append((parent, child, module))
                del weight
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
