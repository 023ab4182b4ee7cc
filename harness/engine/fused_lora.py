"""peft's LoRA layers routed through the LoRA kernels (harness.engine.kernels.lora) for the duration
of a fused forward (harness.engine.fused): which layers qualify, sibling layers sharing one down
product, and each call's check that it is one plain LoRA without autograd."""

from __future__ import annotations

import functools
import weakref

import torch

from harness.engine.kernels import lora, nf4_gemv


def lora_layers(model) -> list:
    """The LoRA linear layers of `model` that `install` routes."""
    rounding = _rounding_by_class()
    return [m for m in model.modules() if type(m) in rounding and len(m.lora_A)]


def warm_up(layers: list, siblings: list[list] = ()) -> None:
    """Compile the kernels for the layers' shapes and dtypes now, not inside a timed step, and the
    down product of each sibling group's stack (see `_SharedDown`) for every adapter, whichever is
    active now (a cold machine's first adapted column stalled seconds compiling the stack's)."""
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
                for rows in (1, lora.MAX_ROWS + 1):
                    lora.down(torch.zeros(rows, stacked.shape[1], dtype=dtype, device=stacked.device), stacked)
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
            for rows in (1, lora.MAX_ROWS + 1):  # a decoding step's kernels, and a prefill's tiles
                x = torch.zeros(rows, a.shape[1], dtype=dtype, device=a.device)
                lora.add_lora_(torch.zeros(rows, b.shape[0], dtype=dtype, device=a.device), x, a, b, 1.0, key[-1])


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
    call, a prefill's inputs would keep every layer's activations alive (gigabytes in a long
    prefill)."""

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
            found = _lora_of(layer, None, {})
            if found is None:
                return None
            matrices.append(found[0])
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
            self.x, self.h, self.waiting = x, lora.down(x, self.stacked), set(self.matrices)
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
    found = _lora_of(module, x, kwargs)
    if found is None:
        return original(x, *args, **kwargs)
    a, b, scale = found
    h = shared.down(module, a, x) if shared is not None else None
    if nf4 and not args and not kwargs and nf4_gemv.qualifies(module.base_layer, x):
        h = lora.down(x, a) if h is None else h
        return nf4_gemv.nf4_matvec(module.base_layer, x, (h.reshape(-1), b, scale, round_first))
    result = module.base_layer(x, *args, **kwargs)
    return lora.add_lora_(result, x, a, b, scale, round_first, h)


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
