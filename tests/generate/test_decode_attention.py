"""A decoding step's attention in harness.engine.kernels.decode_attention's Triton kernels computes softmax attention
(against an fp32 reference, over masks, head groups and split caches), gives the same bits on every
call, and is what transformers' SDPA attention runs inside a decoding step. The kernels need a CUDA
GPU and Triton: on CPU CI this file skips (`benchmarks/gpu.py attention` times them on a GPU)."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available() or importlib.util.find_spec("triton") is None,
    reason="the decode attention kernels need a CUDA GPU and Triton",
)


def _reference(q, k, v, mask, scale):
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, 1).float(), v.repeat_interleave(group, 1).float()
    scores = (q.float() @ k.transpose(-1, -2)) * scale
    if mask is not None:
        scores = scores + mask[..., : k.shape[2]].float()
    return (scores.softmax(-1) @ v).transpose(1, 2)


def _mask(valid, dtype, extra=0):
    """transformers' additive mask: 0 where seen, the dtype's minimum where hidden; `extra` slots
    past the cache (SDPA slices them off)."""
    valid = torch.nn.functional.pad(valid, (0, extra))
    return torch.zeros(valid.shape[0], 1, 1, valid.shape[1], dtype=dtype, device="cuda").masked_fill_(
        ~valid[:, None, None, :], torch.finfo(dtype).min
    )


# rows × heads from a streamed answer's (split over the cache) to a batch's (one program each).
@pytest.mark.parametrize(
    "rows,heads,kv_heads,slots,size,dtype",
    [
        (1, 32, 32, 300, 128, torch.bfloat16),
        (1, 8, 2, 1000, 64, torch.bfloat16),
        (3, 4, 4, 70, 64, torch.float16),
        (256, 8, 8, 100, 128, torch.bfloat16),
        (5, 12, 4, 33, 256, torch.bfloat16),
    ],
)
@pytest.mark.parametrize("masked", [True, False])
def test_kernel_computes_softmax_attention_and_repeats_its_bits(rows, heads, kv_heads, slots, size, dtype, masked):
    from harness.engine.kernels.decode_attention import attention, qualifies

    g = torch.Generator(device="cuda").manual_seed(rows * slots)
    q = torch.randn(rows, 1, heads, size, dtype=dtype, device="cuda", generator=g).transpose(1, 2)
    k = torch.randn(rows, kv_heads, slots, size, dtype=dtype, device="cuda", generator=g)
    v = torch.randn(rows, kv_heads, slots, size, dtype=dtype, device="cuda", generator=g)
    mask = None
    if masked:
        valid = torch.rand(rows, slots, device="cuda", generator=g) < 0.7
        valid[:, : slots // 2] = False  # whole blocks hidden (a left-padded prompt)
        valid[:, -1] = True
        mask = _mask(valid, dtype, extra=16)
    scale = 1 / math.sqrt(size)
    with torch.inference_mode():
        assert qualifies(q, k, v, mask)
        out = attention(q, k, v, mask, scale)
        expected = _reference(q, k, v, mask, scale)
        assert out.shape == (rows, 1, heads, size) and out.dtype == dtype
        # fp32 throughout, rounded once: within one rounding of the output dtype
        assert torch.allclose(out.float(), expected, rtol=2**-7, atol=2e-3)
        for _ in range(4):
            assert torch.equal(attention(q, k, v, mask, scale), out)


def test_transformers_sdpa_runs_the_kernel_for_one_query_only(monkeypatch):
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    from harness.engine.kernels import decode_attention

    sdpa = ALL_ATTENTION_FUNCTIONS["sdpa"]
    calls = []
    real = decode_attention.attention
    monkeypatch.setattr(decode_attention, "attention", lambda *a: calls.append(1) or real(*a))
    module = torch.nn.Module()
    q1 = torch.randn(2, 4, 1, 64, dtype=torch.bfloat16, device="cuda")
    q8 = torch.randn(2, 4, 8, 64, dtype=torch.bfloat16, device="cuda")
    k = torch.randn(2, 4, 40, 64, dtype=torch.bfloat16, device="cuda")
    v = torch.randn_like(k)
    with torch.inference_mode():
        with decode_attention.one_query_steps():
            one, _ = ALL_ATTENTION_FUNCTIONS["sdpa"](module, q1, k, v, None, scaling=0.125, is_causal=False)
            assert len(calls) == 1
            ALL_ATTENTION_FUNCTIONS["sdpa"](module, q8, k, v, None, scaling=0.125, is_causal=False)
            assert len(calls) == 1  # a prefill stays with SDPA
        plain, _ = sdpa(module, q1, k, v, None, scaling=0.125, is_causal=False)
    assert ALL_ATTENTION_FUNCTIONS["sdpa"] is sdpa
    assert one.shape == plain.shape and torch.allclose(one.float(), plain.float(), rtol=2**-7, atol=2e-3)


def test_batched_greedy_answers_repeat_exactly(gen_adapter, tiny_ref):
    """Two runs of the same batch through the decoder (a captured graph, the kernels in its steps)
    give the same tokens."""
    from harness.config.generation import GenerationSettings
    from harness.config.model import Quantization
    from harness.engine.decoding import StaticDecoder
    from harness.engine.step_attention import step_attention_note
    from harness.model.adapters import attach_adapters
    from harness.model.loading import load_base
    from harness.runtime.env import detect

    models = attach_adapters(load_base(tiny_ref, Quantization(compute_dtype="bf16"), detect()), {"a": str(gen_adapter)})
    tokenizer = models.base.tokenizer
    texts = [
        "문맥: 서울은 대한민국의 수도이다.\n질문: 수도는?\n답:",
        "질문: 한강은 어디에 있나?\n답:",
        "The capital of France is",
        "문맥: 부산은 항구 도시이다. 질문: 부산은? 답:",
    ] * 8
    prompts = [tokenizer(t)["input_ids"] for t in texts]
    settings = GenerationSettings(max_new_tokens=16, min_new_tokens=16)
    need = max(map(len, prompts)) + 16

    def answers(model):
        decoder = StaticDecoder(model, tokenizer, settings, len(prompts), need)
        try:
            return torch.stack(list(decoder.run(prompts))).T.tolist()
        finally:
            decoder.close()

    with models.use("a") as model, torch.inference_mode():
        first = answers(model)
        assert answers(model) == first
        assert step_attention_note(model) == "decoding steps' attention in reproducible Triton kernels"
