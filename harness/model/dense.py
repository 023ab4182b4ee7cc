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

from harness.runtime.env import release_cuda_memory


@dataclass(frozen=True)
class DensePlan:
    fits: bool
    bytes_needed: int
    reason: str  # why the dense path is not taken ("" when it is)


def plan(model, dtype, memory: tuple[int, int] | None = None) -> DensePlan:
    """Whether a dense copy of `model`'s 4-bit weights fits; `memory` = (free, total) bytes of its
    GPU (read from the device when None; a model off the GPU always fits)."""
    import torch

    from harness.model.dequantize import dequantized_bytes

    needed = dequantized_bytes(model, dtype)
    if not needed:  # nothing to dequantize: the model already computes densely
        return DensePlan(True, 0, "")
    device = next(model.parameters()).device
    if memory is None:
        if device.type != "cuda":
            return DensePlan(True, needed, "")
        memory = torch.cuda.mem_get_info(device)
    free, total = memory
    # Keep room beside the copy for the KV cache and activations of a useful batch.
    headroom = max(2 << 30, int(0.15 * total))
    if needed + headroom > free:
        return DensePlan(
            False,
            needed,
            f"a {dtype_name(dtype)} copy of the base needs {needed / 2**30:.1f} GiB "
            f"plus {headroom / 2**30:.1f} GiB of room and {free / 2**30:.1f} GiB "
            f"are free",
        )
    return DensePlan(True, needed, "")


def dtype_name(dtype) -> str:
    return str(dtype).replace("torch.", "")


@contextlib.contextmanager
def dense_model(model, dtype):
    """Yield `model` with its 4-bit linears replaced by dequantized ones; put back on exit."""
    import torch

    from harness.model.dequantize import restore, swap_in_dequantized

    swapped: list = []
    try:
        with torch.no_grad():
            swapped = swap_in_dequantized(model, dtype)
        yield model
    finally:
        restore(swapped)
        release_cuda_memory()
