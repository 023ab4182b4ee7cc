"""Attention within each sequence of a padding-free row (CUDA), through PyTorch's varlen flash attention.

A padding-free row concatenates a micro-batch's sequences. sdpa then attends over the whole row under
a block-diagonal causal mask: work and mask memory grow with the square of the row's length (n
sequences in a row: about n times the work of attending within each sequence), and the masked
kernel is slower than flash attention. PyTorch's `varlen_attn` runs flash
attention over each sequence alone, from the boundaries TRL's padding-free collator already passes
(`cu_seq_lens_q`/`_k`, `max_length_q`/`_k`). Same math as the masked sdpa; anything else (no
boundaries, a batch of several rows, dropout, windows) goes to transformers' sdpa unchanged.
"""

from __future__ import annotations

import inspect

import torch

NAME = "harness_varlen_sdpa"


def unavailable_reason(device: str, compute_dtype: str) -> str | None:
    """None when varlen attention can run here, else why not (for the plan line)."""
    if device != "cuda":
        return "needs CUDA"
    if compute_dtype not in ("bf16", "fp16"):
        return f"flash attention needs bf16 or fp16, not {compute_dtype}"
    params = _varlen_parameters()
    if params is None:
        return f"torch {torch.__version__} has no torch.nn.attention.varlen"
    if "is_causal" not in params and "window_size" not in params:
        return f"torch {torch.__version__}'s varlen_attn has no causal mode"
    return None


def use_varlen_attention(model) -> str:
    """Switch `model` (a transformers PreTrainedModel using sdpa) to varlen attention; returns the
    implementation it had, to restore with `model.set_attn_implementation(previous)`."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, varlen_or_sdpa_attention)
    # sdpa's masks, for the calls that fall back to sdpa (transformers builds one mask per forward).
    if NAME not in ALL_MASK_ATTENTION_FUNCTIONS:
        AttentionMaskInterface.register(NAME, sdpa_mask)
    previous = model.config._attn_implementation
    model.set_attn_implementation(NAME)
    return previous


def varlen_or_sdpa_attention(
    module, query, key, value, attention_mask, dropout: float = 0.0, scaling: float | None = None, **kwargs
):
    """transformers' attention signature: query (1, heads, tokens, dim) → output (1, tokens, heads, dim)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    cu_q, cu_k = kwargs.get("cu_seq_lens_q"), kwargs.get("cu_seq_lens_k")
    plain = (
        cu_q is None
        or cu_k is None
        or query.shape[0] != 1
        or dropout
        or not getattr(module, "is_causal", True)
        or getattr(module, "sliding_window", None)
        or kwargs.get("softcap") is not None
    )
    if plain:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    params = _varlen_parameters()
    # Under autocast sdpa computes in the autocast dtype; the flash kernel takes only 16-bit inputs.
    dtype = torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else query.dtype
    groups = query.shape[1] // key.shape[1]
    if groups > 1 and "enable_gqa" not in params:
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    q, k, v = (t[0].transpose(0, 1).to(dtype) for t in (query, key, value))  # (tokens, heads, dim)
    options = {}
    if "window_size" in params:
        options["window_size"] = (-1, 0)  # causal
    else:
        options["is_causal"] = True
    if scaling is not None and "scale" in params:
        options["scale"] = scaling
    elif scaling is not None and abs(scaling - q.shape[-1] ** -0.5) > 1e-6:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    if groups > 1 and "enable_gqa" in params:
        options["enable_gqa"] = True
    from torch.nn.attention.varlen import varlen_attn

    out = varlen_attn(
        q,
        k,
        v,
        cu_q.to(q.device, torch.int32),
        cu_k.to(q.device, torch.int32),
        int(kwargs["max_length_q"]),
        int(kwargs["max_length_k"]),
        **options,
    )
    return out.unsqueeze(0), None


def _varlen_parameters() -> set[str] | None:
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return set(inspect.signature(varlen_attn).parameters)
