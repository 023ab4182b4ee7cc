"""The speed settings of `harness train` change how the work is done, never what is learned.

- padding-free batches (the whole global batch as one micro-step of concatenated sequences) give the
  per-step losses and the adapter of the padded run with gradient accumulation;
- a dequantized base computes what the 4-bit base computes, and trains the same;
- the plan (micro-batch, recomputation, dequantization, Liger) follows from config, hardware and memory,
  and a setting the machine cannot honour is one line and exit code 2.

The model runs are real: tiny model, 4-bit bitsandbytes on CPU, peft, TRL; torch on one thread.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.config import TrainConfig, load_config
from harness.errors import ConfigError
from harness.runtime.env import Environment
from harness.train.plan import activation_bytes, fit_to_memory, micro_step_tokens, plan_training

PRESET = Path(__file__).resolve().parents[1] / "harness" / "data" / "presets" / "tiny-ko-qa.yaml"
GIB = 2**30

# Global batch 4 as 2 × 2: the padded run accumulates two micro-batches, the padding-free one runs
# the four sequences as one micro-step.
SPLIT = {
    "data.limit": 16,
    "data.validation_fraction": 0,
    "training.max_steps": 6,
    "training.logging_steps": 1,
    "training.save_steps": 1000,
    "training.learning_rate": 0.003,
    "training.batch_size": 2,
    "training.gradient_accumulation": 2,
}
# Measured on 2 CPU cores, one thread: the first step agrees exactly, every later step to ≤ 2e-7 relative
# (float summation order), the adapters to ≤ 4e-6 absolute (weights up to ~0.1).
FIRST_STEP_RTOL = 1e-5
STEP_RTOL = 1e-5
ADAPTER_ATOL = 5e-5
# On a GPU training computes in bf16 and the layouts run different kernels: on an H100 the losses of
# 6 steps parted by up to 6e-4 relative. Adam's update on a near-zero gradient is a sign, so single
# adapter weights can part by up to the learning rate per step; the adapters are compared as a whole.
GPU_STEP_RTOL = 2e-3
GPU_ADAPTER_RELATIVE = 5e-2


def on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def assert_losses_agree(a: list[float], b: list[float]) -> None:
    first, later = (GPU_STEP_RTOL, GPU_STEP_RTOL) if on_gpu() else (FIRST_STEP_RTOL, STEP_RTOL)
    assert b[0] == pytest.approx(a[0], rel=first), (a, b)
    for step, (x, y) in enumerate(zip(a, b), start=1):
        assert y == pytest.approx(x, rel=later), (step, a, b)


def assert_adapters_agree(a: dict, b: dict) -> None:
    import torch

    assert a.keys() == b.keys() and a
    for name in a:
        if on_gpu():
            assert float((a[name] - b[name]).norm() / a[name].norm().clamp_min(1e-12)) <= GPU_ADAPTER_RELATIVE, name
        else:
            assert torch.allclose(a[name], b[name], atol=ADAPTER_ATOL, rtol=0), name


def preset_config(output_dir: Path | None = None, **overrides) -> TrainConfig:
    where = {"output_dir": str(output_dir)} if output_dir else {}
    return load_config(TrainConfig, PRESET, {**where, **overrides})


def environment(device: str = "cpu") -> Environment:
    return Environment(
        device=device,
        device_name="test",
        cuda_capability="9.0" if device == "cuda" else None,
        bf16_supported=device == "cuda",
        gpu_memory_bytes=80 * GIB if device == "cuda" else None,
        bitsandbytes_backend=device,
        cpu_count=2,
        python="3.11",
    )


def losses(record: dict) -> list[float]:
    return [h["loss"] for h in record["history"] if "loss" in h]


def adapter_tensors(directory: str | Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(directory) / "adapter_model.safetensors"))


@pytest.fixture(scope="module")
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def split_runs(tmp_path_factory, harness_cache, one_thread) -> dict[str, dict]:
    """The same 6 steps three ways: padded 2 × 2, padding-free, padding-free on a dequantized base."""
    from harness.train.recipe import train

    root = tmp_path_factory.mktemp("split")
    settings = {
        "padded": {"training.padding_free": False},
        # 4-bit kept explicitly: on a GPU with room, `auto` would dequantize this run too.
        "padding_free": {"training.padding_free": True, "training.dequantize_base": False},
        "dequantized": {"training.padding_free": True, "training.dequantize_base": True},
    }
    return {name: train(preset_config(root / name, **SPLIT, **extra)) for name, extra in settings.items()}


# ---------------------------------------------------------------- padding-free equals padded accumulation


@pytest.mark.slow
def test_padding_free_runs_the_global_batch_as_one_micro_step(split_runs):
    padded, free = split_runs["padded"]["plan"], split_runs["padding_free"]["plan"]
    assert (padded["batch_size"], padded["gradient_accumulation"], padded["padding_free"]) == (2, 2, False)
    assert (free["batch_size"], free["gradient_accumulation"], free["padding_free"]) == (4, 1, True)
    assert "one micro-step" in free["why"]["micro_batch"]


@pytest.mark.slow
def test_padding_free_loss_curve_equals_padded_accumulation(split_runs):
    padded, free = split_runs["padded"], split_runs["padding_free"]
    assert len(losses(padded)) == len(losses(free)) == SPLIT["training.max_steps"]
    assert_losses_agree(losses(padded), losses(free))
    # The same non-padding tokens went through the model (counted from the attention mask when padded).
    assert free["tokens_seen"] == padded["tokens_seen"] > 0


@pytest.mark.slow
def test_padding_free_adapter_equals_padded_adapter(split_runs):
    a = adapter_tensors(split_runs["padded"]["config"]["output_dir"])
    b = adapter_tensors(split_runs["padding_free"]["config"]["output_dir"])
    assert_adapters_agree(a, b)
    # ...and training moved them: the comparison is not between two untouched initialisations.
    assert max(t.abs().max().item() for n, t in a.items() if "lora_B" in n) > 1e-3


# ---------------------------------------------------------------- dequantized base


@pytest.mark.slow
def test_dequantized_base_computes_what_the_4bit_base_computes(tiny_ref, one_thread):
    import torch
    from peft import prepare_model_for_kbit_training

    from harness.config.model import Quantization
    from harness.model.dequantize import DequantizedLinear, dequantize_linear4bit, dequantized_bytes
    from harness.model.loading import linear_module_names, load_base
    from harness.runtime.env import detect

    base = load_base(tiny_ref, Quantization(), detect())
    model = prepare_model_for_kbit_training(base.model, use_gradient_checkpointing=False).eval()
    ids = base.tokenizer(
        ["한국의 수도는 서울이다. 부산은 항구 도시이다.", "질문: 수도는? 답:"], return_tensors="pt", padding=True
    ).input_ids.to(base.model.device)
    names_before = linear_module_names(model)
    expected_bytes = dequantized_bytes(model, torch.float32)
    with torch.no_grad():
        quantized_logits = model(input_ids=ids).logits

    assert dequantize_linear4bit(model, torch.float32) == 2 * 7  # 2 layers × q, k, v, o, gate, up, down
    with torch.no_grad():
        dense_logits = model(input_ids=ids).logits

    # On a GPU the 4-bit layers compute in bf16, the dequantized ones in fp32.
    tolerance = 2**-6 * quantized_logits.abs().max().item() if on_gpu() else 1e-5
    assert (dense_logits - quantized_logits).abs().max().item() <= tolerance
    dense = [m for m in model.modules() if isinstance(m, DequantizedLinear)]
    assert sum(m.weight.numel() * m.weight.element_size() for m in dense) == expected_bytes
    assert all(not m.weight.requires_grad for m in dense)
    assert linear_module_names(model) == names_before  # LoRA finds the same targets, the adapter the same names


@pytest.mark.slow
def test_dequantized_base_trains_like_the_4bit_base(split_runs, tiny_ref):
    """Same losses and adapter as on the 4-bit base, and the adapter reloads onto the 4-bit base."""
    import torch
    from peft import PeftModel

    from harness.model.loading import load_base
    from harness.runtime.env import detect

    four_bit, dense = split_runs["padding_free"], split_runs["dequantized"]
    assert dense["plan"]["dequantize_base"] is True and four_bit["plan"]["dequantize_base"] is False
    assert_losses_agree(losses(four_bit), losses(dense))
    assert_adapters_agree(
        adapter_tensors(four_bit["config"]["output_dir"]), adapter_tensors(dense["config"]["output_dir"])
    )

    probe = dense["probe"]
    config = preset_config(**SPLIT)
    base = load_base(tiny_ref, config.quantization, detect())
    model = PeftModel.from_pretrained(base.model, dense["config"]["output_dir"]).eval()
    ids = base.tokenizer(probe["text"], return_tensors="pt", add_special_tokens=False).input_ids[:, -256:]
    ids = ids.to(base.model.device)
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, -1].float()
    expected = torch.tensor(probe["top_logits"])
    if on_gpu():
        # bf16 logits of another base layout: the probe's tokens keep their logits to bf16's rounding,
        # while near-tied ones among them may swap places.
        got = logits[torch.tensor(probe["top_token_ids"], device=logits.device)].cpu()
        assert torch.allclose(got, expected, atol=2**-6 * float(expected.abs().max()), rtol=0)
        return
    values, indices = logits.topk(len(probe["top_token_ids"]))
    assert indices.tolist() == probe["top_token_ids"]
    assert torch.allclose(values, expected, atol=1e-4, rtol=0)


# ---------------------------------------------------------------- bf16: frozen weights stay bf16


def test_bf16_training_keeps_the_frozen_weights_bf16(tiny_ref):
    """peft's preparation upcasts every 16-bit weight to fp32 (fp16 needs the range). In bf16 the frozen
    embedding, norms and LM head stay bf16: fp32 copies would hold the same values at twice the memory
    and turn the residual stream, and with it every recomputation checkpoint, fp32."""
    import torch

    from harness.model.loading import load_base
    from harness.runtime.env import detect
    from harness.train.lora import wrap_with_lora

    config = preset_config(**{"quantization.compute_dtype": "bf16"})
    plan = plan_training(config, detect())
    base = load_base(tiny_ref, config.quantization, detect())
    model = wrap_with_lora(config, base.model, plan)
    frozen = {name: p.dtype for name, p in model.named_parameters() if not p.requires_grad}
    trained = [name for name, p in model.named_parameters() if p.requires_grad]
    assert {frozen[n] for n in frozen if "embed_tokens" in n or "lm_head" in n or "norm" in n} == {torch.bfloat16}
    assert set(frozen.values()) == {torch.bfloat16, torch.uint8}  # uint8: the packed 4-bit weights
    assert trained and all("lora_" in name for name in trained)


# ---------------------------------------------------------------- the plan


def test_padding_free_is_on_by_default_and_merges_accumulation():
    config = preset_config(**{"training.batch_size": 4, "training.gradient_accumulation": 4})
    plan = plan_training(config, environment())
    assert (plan.batch_size, plan.gradient_accumulation, plan.global_batch, plan.padding_free) == (16, 1, 16, True)
    assert "padding_free=on" in plan.describe() and "one micro-step" in plan.describe()
    # Off, or with packing, the configured split stays.
    for overrides in ({"training.padding_free": False}, {"data.packing": True}):
        plan = plan_training(
            preset_config(**{"training.batch_size": 4, "training.gradient_accumulation": 4, **overrides}), environment()
        )
        assert (plan.batch_size, plan.gradient_accumulation, plan.padding_free) == (4, 4, False)


def test_padding_free_keeps_the_global_batch_across_processes():
    config = preset_config(**{"training.batch_size": 4, "training.gradient_accumulation": 4})
    plan = plan_training(config, environment(), world_size=2)
    assert (plan.batch_size, plan.gradient_accumulation, plan.global_batch) == (8, 1, 16)


def test_padding_free_needs_an_attention_that_reads_packed_positions():
    config = preset_config(**{"training.gradient_accumulation": 2})
    plan = plan_training(config, environment(), attention="some_hub_kernel")
    assert plan.padding_free is False and plan.gradient_accumulation == 2
    assert "some_hub_kernel" in plan.why["padding_free"]
    with pytest.raises(ConfigError, match=r"training.padding_free: true needs an attention"):
        plan_training(preset_config(**{"training.padding_free": True}), environment(), attention="some_hub_kernel")
    with pytest.raises(ConfigError, match=r"data.packing"):
        plan_training(preset_config(**{"training.padding_free": True, "data.packing": True}), environment())


def test_cpu_defaults_leave_liger_checkpointing_and_dequantization_off():
    plan = plan_training(preset_config(), environment())
    assert (plan.liger, plan.gradient_checkpointing, plan.dequantize_base) == (False, False, False)
    assert plan_training(preset_config(**{"training.dequantize_base": True}), environment()).dequantize_base
    with pytest.raises(ConfigError, match=r"training.dequantize_base: true needs a 4-bit base"):
        plan_training(preset_config(**{"training.dequantize_base": True, "quantization.mode": "int8"}), environment())


def test_liger_true_without_cuda_is_one_line_naming_the_field(run_cli):
    import torch

    with pytest.raises(ConfigError, match=r"training.liger: true needs CUDA; set training.liger: auto or false"):
        plan_training(preset_config(**{"training.liger": True}), environment())
    if torch.cuda.is_available():
        return  # the CLI would find CUDA here
    code, _out, err = run_cli(["train", "--set", "training.liger=true", "--set", "training.max_steps=1"])
    assert code == 2
    assert err.strip().splitlines() == [err.strip()]
    assert "training.liger" in err and "auto or false" in err


SEVEN_B = dict(hidden_size=4096, intermediate_size=11008, num_layers=32)
ROWS = [250] * 100  # the 16 longest: 4,000 tokens in one padding-free micro-step


def test_activation_estimate_and_micro_step_tokens():
    full, checkpointed = activation_bytes(1000, **SEVEN_B)
    assert full == 1000 * 32 * 2 * (20 * 4096 + 4 * 11008)  # ≈ 7.5 GiB for 1,000 tokens of a 7B Llama
    assert checkpointed < full / 10
    lengths = [100, 300, 200, 50]
    assert micro_step_tokens(lengths, 2, padding_free=True) == 500  # the two longest, end to end
    assert micro_step_tokens(lengths, 2, padding_free=False) == 600  # both padded to the longest
    assert micro_step_tokens([], 2, padding_free=True) == 0


def cuda_plan(**overrides):
    config = preset_config(
        **{
            "training.batch_size": 4,
            "training.gradient_accumulation": 4,
            "training.optimizer": "adamw_torch",
            "training.liger": False,
            **overrides,
        }
    )
    return config, plan_training(config, environment("cuda"))


def test_whole_gpu_drops_recomputation_and_dequantizes_when_both_fit():
    config, plan = cuda_plan()
    fit_to_memory(plan, config, free_bytes=74 * GIB, dequantized_bytes=13 * GIB, lengths=ROWS, **SEVEN_B)
    assert plan.gradient_checkpointing is False and plan.dequantize_base is True
    assert "checkpointing off" in plan.describe() and "dequantized base on" in plan.describe()


def test_tight_memory_keeps_recomputation_then_dequantizes_only_what_fits():
    config, plan = cuda_plan()
    fit_to_memory(plan, config, free_bytes=20 * GIB, dequantized_bytes=13 * GIB, lengths=ROWS, **SEVEN_B)
    assert plan.gradient_checkpointing is True and plan.dequantize_base is True  # 13 GiB + ~2 GiB checkpointed
    config, plan = cuda_plan()
    fit_to_memory(plan, config, free_bytes=10 * GIB, dequantized_bytes=13 * GIB, lengths=ROWS, **SEVEN_B)
    assert plan.gradient_checkpointing is True and plan.dequantize_base is False


def test_explicit_checkpointing_is_the_low_memory_mode():
    config, plan = cuda_plan(**{"training.gradient_checkpointing": True})
    fit_to_memory(plan, config, free_bytes=74 * GIB, dequantized_bytes=13 * GIB, lengths=ROWS, **SEVEN_B)
    assert plan.gradient_checkpointing is True and plan.dequantize_base is False
    # An explicit dequantize_base: true still wins, and recomputation on auto then leaves room for it.
    config, plan = cuda_plan(**{"training.dequantize_base": True})
    fit_to_memory(plan, config, free_bytes=40 * GIB, dequantized_bytes=13 * GIB, lengths=ROWS, **SEVEN_B)
    assert plan.dequantize_base is True and plan.gradient_checkpointing is True  # 30 GiB of activations + 13


def test_micro_step_is_split_only_where_even_recomputation_does_not_fit():
    config, plan = cuda_plan(**{"training.gradient_checkpointing": True})
    fit_to_memory(plan, config, free_bytes=74 * GIB, dequantized_bytes=13 * GIB, lengths=ROWS, **SEVEN_B)
    assert (plan.batch_size, plan.gradient_accumulation) == (16, 1)  # ~2.9 GiB checkpointed: fits
    config, plan = cuda_plan(**{"training.gradient_checkpointing": True})
    fit_to_memory(plan, config, free_bytes=2 * GIB, dequantized_bytes=13 * GIB, lengths=ROWS, **SEVEN_B)
    assert (plan.batch_size, plan.gradient_accumulation, plan.global_batch) == (8, 2, 16)
    assert "do not fit" in plan.why["micro_batch"]


# ---------------------------------------------------------------- varlen attention


def test_varlen_attention_needs_cuda_and_16_bit():
    from harness.engine.kernels.varlen_attention import unavailable_reason

    assert unavailable_reason("cpu", "fp32") == "needs CUDA"
    assert "bf16 or fp16" in unavailable_reason("cuda", "fp32")
    assert plan_training(preset_config(), environment(), attention="sdpa").varlen_attention is False


@pytest.mark.slow
def test_varlen_attention_falls_back_to_sdpa_without_sequence_boundaries(tiny_ref, one_thread):
    """Where no boundaries come with the batch (a probe, generation), the switched model computes what
    sdpa computes, packed rows included (their mask is sdpa's block-diagonal one)."""
    import torch

    from harness.config.model import Quantization
    from harness.engine.kernels.varlen_attention import NAME, use_varlen_attention
    from harness.model.loading import load_base
    from harness.runtime.env import detect

    base = load_base(tiny_ref, Quantization(mode="none"), detect())
    model = base.model.eval()
    ids = base.tokenizer("한국의 수도는 서울이다. 부산은 항구 도시이다.", return_tensors="pt").input_ids
    ids = ids.to(model.device)
    packed = torch.cat([ids, ids[:, :7]], dim=1)
    positions = torch.cat([torch.arange(ids.shape[1]), torch.arange(7)])[None].to(model.device)
    # use_cache=False as in training: transformers reads packed position ids only without a cache.
    with torch.no_grad():
        expected = [
            model(input_ids=ids).logits,
            model(input_ids=packed, position_ids=positions, use_cache=False).logits,
        ]
        assert use_varlen_attention(model) == "sdpa" and model.config._attn_implementation == NAME
        actual = [model(input_ids=ids).logits, model(input_ids=packed, position_ids=positions, use_cache=False).logits]
    for a, b in zip(expected, actual):
        assert torch.equal(a, b)
    # The packed row's second sequence does not see the first: it equals that sequence alone.
    with torch.no_grad():
        alone = model(input_ids=ids[:, :7]).logits
    # (on a GPU in bf16, where a longer row runs other kernels: to bf16's rounding)
    tolerance = 2**-6 * alone.abs().max().item() if on_gpu() else 1e-5
    assert torch.allclose(actual[1][0, ids.shape[1] :], alone[0], atol=tolerance)
    model.set_attn_implementation("sdpa")


@pytest.mark.skipif("not __import__('torch').cuda.is_available()")
def test_varlen_attention_equals_masked_sdpa_on_cuda():
    """Forward and backward of varlen attention on a padding-free row equal sdpa under the block-diagonal
    mask (bf16, so to bf16 rounding)."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from harness.engine.kernels.varlen_attention import unavailable_reason, varlen_or_sdpa_attention

    if unavailable_reason("cuda", "bf16"):
        pytest.skip(unavailable_reason("cuda", "bf16"))
    torch.manual_seed(0)
    lengths = [37, 120, 5, 64]
    total, heads, dim = sum(lengths), 8, 64
    seq = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths)).cuda()
    position = torch.arange(total, device="cuda")
    mask = (seq[:, None] == seq[None, :]) & (position[:, None] >= position[None, :])
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32, device="cuda")

    class Module(torch.nn.Module):
        is_causal = True
        num_key_value_groups = 2

    q = torch.randn(1, heads, total, dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    kv = torch.randn(2, 1, heads // 2, total, dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    outputs, grads = [], []
    for attention, kwargs in (
        (sdpa_attention_forward, {}),
        (
            varlen_or_sdpa_attention,
            {"cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "max_length_q": max(lengths), "max_length_k": max(lengths)},
        ),
    ):
        out, _ = attention(Module(), q, kv[0], kv[1], mask[None, None], scaling=dim**-0.5, **kwargs)
        out.float().pow(2).sum().backward()
        outputs.append(out.detach().float())
        grads.append((q.grad.clone(), kv.grad.clone()))
        q.grad, kv.grad = None, None
    assert (outputs[0] - outputs[1]).abs().max().item() < 2e-2
    for a, b in zip(grads[0], grads[1]):
        assert (a.float() - b.float()).abs().max().item() < 5e-2 * a.float().abs().max().item()
