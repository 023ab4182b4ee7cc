"""The NF4 matrix-vector kernel (harness.engine.kernels.nf4_gemv) computes what bitsandbytes computes, on layers
quantized by bitsandbytes itself, and takes only the calls it can run. The kernel needs a CUDA GPU
and Triton: on CPU CI this file skips, and the GPU benchmark's `trained_model_verify` row checks
whole answers (benchmarks/RESULTS.md)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available() or importlib.util.find_spec("triton") is None,
    reason="the NF4 kernel needs a CUDA GPU and Triton",
)


def _layer(out_features: int, in_features: int, blocksize: int, nested: bool):
    import bitsandbytes as bnb

    layer = bnb.nn.Linear4bit(
        in_features,
        out_features,
        bias=False,
        compute_dtype=torch.bfloat16,
        quant_type="nf4",
        compress_statistics=nested,
    )
    layer.weight = bnb.nn.Params4bit(
        torch.randn(out_features, in_features, dtype=torch.bfloat16) * 0.02,
        requires_grad=False,
        quant_type="nf4",
        compress_statistics=nested,
        blocksize=blocksize,
    )
    return layer.cuda()


@pytest.mark.parametrize(
    "shape,blocksize,nested",
    [
        ((512, 2048), 64, True),  # whole 1,024-byte steps
        ((384, 2816), 64, True),  # a partial last step, like a 7B down projection's 11,008
        ((202, 512), 128, False),  # fp32 scales, a row count no multiple of the kernel's rows per program
    ],
)
def test_one_row_products_are_nearer_the_exact_product_than_bitsandbytes(shape, blocksize, nested):
    from harness.engine.kernels.nf4_gemv import nf4_matvec

    torch.manual_seed(0)
    layer = _layer(*shape, blocksize, nested)
    x = torch.randn(1, 1, shape[1], dtype=torch.bfloat16, device="cuda")
    with torch.inference_mode():
        expected = layer(x).float().view(-1)
        actual = nf4_matvec(layer, x)
        exact = _exact(layer) @ x.double().view(-1)
    assert actual.shape == (1, 1, shape[0])
    mine, theirs = (actual.double().view(-1) - exact).abs(), (expected.double() - exact).abs()
    # bitsandbytes rounds every weight and product to bf16 before summing; the kernel does not
    assert mine.mean() < theirs.mean(), (mine.mean(), theirs.mean())
    # what is left: the bf16 code table (≤ 2^-9 per weight, summed at random: ~1e-3 of the output's
    # rms, 5e-3 at the tail of `shape[0]` outputs) and the output's rounding (≤ 2^-9)
    rms = exact.pow(2).mean().sqrt()
    assert torch.all(mine <= 2**-8 * exact.abs() + 5e-3 * rms), (mine / rms).max()


def _exact(layer) -> torch.Tensor:
    """The layer's weights as the NF4 format defines them, in float64: code value × block scale."""
    import bitsandbytes.functional as F

    state = layer.weight.quant_state
    packed = layer.weight.data.view(-1).long()
    codes = torch.stack([packed >> 4, packed & 15], dim=1).view(state.shape)
    scales = F.dequantize_blockwise(state.absmax, state.state2) + state.offset if state.nested else state.absmax
    return state.code.double()[codes] * scales.double().repeat_interleave(state.blocksize).view(state.shape)


def test_a_lora_in_the_epilogue_adds_what_the_lora_kernels_add():
    from harness.engine.kernels.lora import add_lora_, down
    from harness.engine.kernels.nf4_gemv import nf4_matvec

    torch.manual_seed(0)
    layer = _layer(256, 1024, 64, True)
    x = torch.randn(1, 1, 1024, dtype=torch.bfloat16, device="cuda")
    a = torch.randn(16, 1024, device="cuda") * 0.05
    b = torch.randn(256, 16, device="cuda") * 0.05
    with torch.inference_mode():
        for round_first in (True, False):
            expected = add_lora_(nf4_matvec(layer, x), x, a, b, 2.0, round_first)
            actual = nf4_matvec(layer, x, (down(x, a).view(-1), b, 2.0, round_first))
            assert (actual == expected).float().mean() >= 0.99  # the order of the rank's sum at most
            assert torch.allclose(actual.float(), expected.float(), rtol=2**-7, atol=1e-3)


def test_fused_kernels_run_an_adapted_4bit_layers_token_in_the_nf4_kernel(gen_adapter, tiny_ref, monkeypatch):
    from harness.config.model import Quantization
    from harness.engine import fused
    from harness.engine.fused_lora import lora_layers
    from harness.engine.kernels import nf4_gemv
    from harness.model.adapters import attach_adapters
    from harness.model.loading import load_base
    from harness.runtime.env import detect

    calls = []
    matvec = nf4_gemv.nf4_matvec
    monkeypatch.setattr(
        nf4_gemv, "nf4_matvec", lambda layer, x, lora=None: calls.append(lora is not None) or matvec(layer, x, lora)
    )
    models = attach_adapters(load_base(tiny_ref, Quantization(compute_dtype="bf16"), detect()), {"a": gen_adapter})
    torch.manual_seed(0)
    with models.use("a") as model, torch.inference_mode():
        assert "NF4 matrix-vector" in fused.describe(model)
        for layer in lora_layers(model):
            x = torch.randn(1, 1, layer.base_layer.in_features, dtype=torch.bfloat16, device="cuda")
            expected = layer(x).float()
            with fused.fused_kernels(model):
                actual = layer(x).float()
            assert calls.pop() is True and not calls  # one kernel call, with the LoRA in its epilogue
            assert (actual - expected).abs().max() <= 0.02 * expected.abs().max()


def test_install_routes_one_row_calls_and_nothing_else():
    from harness.engine.fused_nf4 import install, nf4_layers
    from harness.engine.kernels.nf4_gemv import nf4_matvec

    torch.manual_seed(0)
    layer = _layer(256, 1024, 64, True)
    assert nf4_layers(torch.nn.Sequential(layer)) == [layer]
    one = torch.randn(1, 1, 1024, dtype=torch.bfloat16, device="cuda")
    many = torch.randn(3, 1, 1024, dtype=torch.bfloat16, device="cuda")
    with torch.inference_mode():
        plain_one, plain_many = layer(one), layer(many)
    install([layer])
    try:
        with torch.inference_mode():
            assert torch.equal(layer(one), nf4_matvec(layer, one))
            assert not torch.equal(layer(one), plain_one)  # the kernel ran, not bitsandbytes
            assert torch.equal(layer(many), plain_many)  # several rows: bitsandbytes' forward
            assert torch.equal(layer(one.float()), layer.__class__.forward(layer, one.float()))  # not bf16
        needs_grad = one.clone().requires_grad_()
        assert torch.equal(layer(needs_grad), layer.__class__.forward(layer, needs_grad))  # autograd: bnb's
    finally:
        del layer.__dict__["forward"]


class _GatedMLP(torch.nn.Module):
    """Llama's MLP on 4-bit layers."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.gate_proj, self.up_proj = _layer(hidden, width, 64, True), _layer(hidden, width, 64, True)
        self.down_proj = _layer(width, hidden, 64, True)
        self.act_fn = torch.nn.SiLU()

    def forward(self, x):
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


def test_a_gated_mlp_runs_gate_up_and_silu_in_one_kernel():
    from harness.engine.fused_nf4 import glu_mlps, install, install_glu, nf4_layers
    from harness.engine.kernels.nf4_gemv import nf4_matvec

    torch.manual_seed(0)
    mlp = _GatedMLP(1024, 2816)
    assert glu_mlps(torch.nn.Sequential(mlp)) == [mlp]
    one = torch.randn(1, 1, 1024, dtype=torch.bfloat16, device="cuda")
    many = torch.randn(3, 1, 1024, dtype=torch.bfloat16, device="cuda")
    with torch.inference_mode():
        # the activation: Liger's and torch's SiLU round once each, so at most a last-bit flip
        fused = nf4_matvec(mlp.gate_proj, one, up_layer=mlp.up_proj)
        apart = torch.nn.functional.silu(nf4_matvec(mlp.gate_proj, one)) * nf4_matvec(mlp.up_proj, one)
        assert (fused == apart).float().mean() >= 0.99
        assert torch.allclose(fused.float(), apart.float(), rtol=2**-7, atol=1e-4)
        plain_many = mlp(many)
        install(nf4_layers(mlp))
        install_glu([mlp])
        try:
            assert torch.equal(mlp(one), mlp.down_proj(fused))  # gate, up and SiLU in one, then down
            assert torch.equal(mlp(many), plain_many)  # several rows: the module's own forward
        finally:
            for module in (mlp, mlp.gate_proj, mlp.up_proj, mlp.down_proj):
                del module.__dict__["forward"]
