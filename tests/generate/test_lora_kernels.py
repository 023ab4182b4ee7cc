"""LoRA in two Triton kernels (harness.engine.kernels.lora) computes what peft computes, on the trained tiny
adapter's real layers. The kernels need a CUDA GPU and Triton: on CPU CI this file skips, and the GPU
benchmark's `trained_model_verify` row checks whole answers (benchmarks/RESULTS.md)."""

from __future__ import annotations

import contextlib
import importlib.util

import pytest
import torch

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available() or importlib.util.find_spec("triton") is None,
    reason="the LoRA kernels need a CUDA GPU and Triton",
)


@pytest.mark.parametrize("dense", [False, True], ids=["4bit", "dense"])
def test_lora_kernels_compute_what_peft_computes(gen_adapter, tiny_ref, dense):
    from harness.config.model import Quantization
    from harness.engine import fused
    from harness.engine.fused_lora import install, lora_layers
    from harness.engine.kernels.lora import MAX_ROWS
    from harness.model.adapters import attach_adapters
    from harness.model.loading import load_base
    from harness.runtime.env import detect

    models = attach_adapters(load_base(tiny_ref, Quantization(compute_dtype="bf16"), detect()), {"a": gen_adapter})
    torch.manual_seed(0)
    with models.dense() if dense else contextlib.nullcontext(), models.use("a") as model, torch.inference_mode():
        layers = lora_layers(model)
        assert layers and "LoRA in two kernels" in fused.describe(model)
        for layer in layers:
            width = layer.base_layer.in_features
            # a decoding step's rows (one program each), and a prefill's (tiles of rows)
            for rows in (1, 7, 64, MAX_ROWS + 1, 3000):
                x = torch.randn(rows, 1, width, dtype=torch.bfloat16, device="cuda")
                expected = layer(x)
                install([layer])
                try:
                    actual = layer(x)
                finally:
                    del layer.__dict__["forward"]
                # Only the order of the fp32 sums differs: at most a last-bit flip, on few elements.
                assert (actual == expected).float().mean() >= 0.99
                assert torch.allclose(actual.float(), expected.float(), rtol=2**-7, atol=1e-3)
            assert torch.equal(layer(x), expected)  # peft's forward is back


@pytest.mark.parametrize("rows", [3, 3000])
def test_siblings_reading_one_input_share_one_down_kernel(gen_adapter, tiny_ref, monkeypatch, rows):
    from harness.config.model import Quantization
    from harness.engine import fused_lora
    from harness.engine.kernels import lora as lora_kernels
    from harness.model.adapters import attach_adapters
    from harness.model.loading import load_base
    from harness.runtime.env import detect

    models = attach_adapters(load_base(tiny_ref, Quantization(compute_dtype="bf16"), detect()), {"a": gen_adapter})
    torch.manual_seed(0)
    with models.use("a") as model, torch.inference_mode():
        layers = fused_lora.lora_layers(model)
        groups = fused_lora.sibling_groups(model.get_base_model(), layers)
        assert groups and all(len(group) > 1 for group in groups)
        group = groups[0]
        x = torch.randn(rows, 1, group[0].in_features, dtype=torch.bfloat16, device="cuda")
        expected = [layer(x) for layer in group]
        ranks = []
        down = lora_kernels.down
        monkeypatch.setattr(lora_kernels, "down", lambda x, a: ranks.append(a.shape[0]) or down(x, a))
        fused_lora.install(layers, siblings=groups)
        try:
            actual = [layer(x) for layer in group]
        finally:
            for layer in layers:
                del layer.__dict__["forward"]
    assert ranks == [sum(layer.lora_A["a"].weight.shape[0] for layer in group)]  # one kernel for all
    for got, want in zip(actual, expected):
        assert (got == want).float().mean() >= 0.99
        assert torch.allclose(got.float(), want.float(), rtol=2**-7, atol=1e-3)
