"""transformers' attention functions with a decoding step's attention in the reproducible Triton kernels
(harness.engine.kernels.decode_attention)."""

from __future__ import annotations

import contextlib

from harness.engine.kernels import decode_attention


@contextlib.contextmanager
def one_query_steps():
    """transformers' SDPA attention with one query per row (see `decode_attention.qualifies`) run by
    `decode_attention.attention`, everything else by SDPA as before; put back on exit."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    local = ALL_ATTENTION_FUNCTIONS._local_mapping
    had, before = "sdpa" in local, local.get("sdpa")
    sdpa = ALL_ATTENTION_FUNCTIONS["sdpa"]

    def dispatch(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
        if (
            dropout == 0.0
            and not kwargs.get("softcap")
            and kwargs.get("position_bias") is None
            and kwargs.get("cache") is None
            and decode_attention.qualifies(query, key, value, attention_mask)
        ):
            return decode_attention.attention(query, key, value, attention_mask, scaling), None
        return sdpa(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)

    local["sdpa"] = dispatch
    try:
        yield
    finally:
        if had:
            local["sdpa"] = before
        else:
            local.pop("sdpa", None)
