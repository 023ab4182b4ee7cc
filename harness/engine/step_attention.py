"""Which kernels run a decoding step's attention (one query per row).

PyTorch picks cuDNN's attention on Hopper; for one query per row it does not repeat, so greedy
answers near a tie changed between two identical runs. harness.engine.kernels.decode_attention's
kernels repeat exactly and were as fast as cuDNN or faster (`benchmarks/gpu.py attention`); the
memory-efficient kernel repeats too, but is slower (figures in benchmarks/RESULTS.md). cuDNN's
prefill (many queries) repeats and stays.
"""

from __future__ import annotations

import contextlib

from harness.engine.kernels import fused


def _step_kernels(device) -> str:
    """Which kernels run a one-query step's attention on `device`: "triton"
    (harness.engine.kernels.decode_attention), "efficient" (PyTorch's memory-efficient kernel, where
    Triton is missing) or "" (PyTorch's choice, off a GPU, where its kernels repeat anyway)."""
    if device.type != "cuda":
        return ""
    return "triton" if fused.triton_installed() else "efficient"


def step_attention(device):
    """The context a one-query step's attention runs in (see `_step_kernels`)."""
    kernels = _step_kernels(device)
    if kernels == "triton":
        from harness.engine.kernels.decode_attention import one_query_steps

        return one_query_steps()
    if kernels == "efficient":
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])
    return contextlib.nullcontext()


def step_attention_note(model) -> str:
    """What runs a decoding step's attention on `model` (see `_step_kernels`), for the engine line;
    "" off a GPU."""
    try:
        kernels = _step_kernels(next(model.parameters()).device)
    except StopIteration:
        return ""
    notes = {
        "triton": "decoding steps' attention in reproducible Triton kernels",
        "efficient": "decoding steps' attention in PyTorch's memory-efficient kernel (reproducible)",
    }
    return notes.get(kernels, "")
