"""The model side of the recipe: a base refused before it loads where this recipe cannot train it,
lora.target_modules checked against its module tree, varlen attention where the plan says so, and
the LoRA wrapping of the (possibly dequantized) 4-bit base."""

from __future__ import annotations

from harness.config import TrainConfig
from harness.errors import ConfigError, ModelError, describe
from harness.model.families import check_base, model_class, peft_task_type
from harness.model.loading import linear_module_names, load_tokenizer, resolve_model_ref
from harness.runtime.env import torch_dtype
from harness.train.plan import Plan


def check_trainable_base(config: TrainConfig) -> None:
    """Refuse, before the data or the weights load, a base this recipe cannot train correctly."""
    try:
        path = resolve_model_ref(config.base)
        check_base(config.base, path)
    except ModelError as exc:  # name the config field, as every other config error does
        raise ModelError(f"base: {exc}") from None
    if config.data.chat and not getattr(load_tokenizer(config.base, path), "chat_template", None):
        raise ConfigError(
            f"data.chat: the tokenizer of {config.base} has no chat template; set data.chat: false "
            f"(the data.template then shapes the text)"
        )


def check_target_modules(config: TrainConfig, model) -> None:
    wanted = config.lora.target_modules
    if wanted == "all-linear" or model is None:
        return
    present = linear_module_names(model)
    missing = [m for m in wanted if m not in present]
    if missing:
        raise ConfigError(
            f"lora.target_modules: '{missing[0]}' is not a linear module of {config.base}; "
            f"choose from {', '.join(sorted(present - {'lm_head'}))} or 'all-linear'"
        )


def skeleton(ref: str):
    """The base's module tree on the meta device (no weights); None where that cannot be built."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig

    try:
        path = resolve_model_ref(ref)
    except ModelError as exc:  # name the config field, as every other config error does
        raise ModelError(f"base: {exc}") from None
    try:
        model_config = AutoConfig.from_pretrained(path)
        with init_empty_weights():
            return model_class(model_config).from_config(model_config)
    except Exception:
        return None


def use_varlen_attention(plan: Plan, model) -> str | None:
    """Switch to varlen attention where the plan says so; returns the implementation to restore."""
    if not plan.varlen_attention:
        return None
    from harness.engine.varlen_attention import use_varlen_attention as switch

    try:
        return switch(model)
    except Exception as exc:
        plan.varlen_attention = False
        plan.why["attention"] = f"varlen attention off: {describe(exc)}"
        return None


def wrap_with_lora(config: TrainConfig, model, plan: Plan):
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import set_seed

    if config.quantization.mode != "none":
        # Freezes the base and enables input grads so checkpointing works through frozen 4-bit layers.
        keep = _bf16_frozen(model) if plan.compute_dtype == "bf16" else []
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=plan.gradient_checkpointing)
        # peft also upcasts every 16-bit weight to fp32, which fp16 needs for its range. A bf16 weight holds
        # the same values in fp32, so in bf16 the upcast buys nothing and costs a lot: the embedding and LM
        # head double in size and the residual stream turns fp32, so each layer's checkpoint doubles (1.8 GB
        # at 3,500 tokens on a 7B) and every linear first casts its input. Evaluation runs these weights in
        # bf16 as well, so the adapter also trains on the numbers it is evaluated with.
        for param in keep:
            param.data = param.data.to(torch.bfloat16)
    if plan.dequantize_base:
        # After the preparation above, which would upcast the dequantized weights to fp32 as well.
        from harness.model.dequantize import dequantize_linear4bit

        dequantize_linear4bit(model, torch_dtype(plan.compute_dtype))
    lora = config.lora
    # LoRA's A matrices start random: seeded here (the Trainer seeds only later), so the same config and
    # seed give the same run in any process.
    set_seed(config.training.seed)
    peft_config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        bias=lora.bias,
        target_modules=lora.target_modules,
        rank_pattern=dict(lora.rank_pattern),
        task_type=peft_task_type(model.config),
    )
    return get_peft_model(model, peft_config)


def _bf16_frozen(model) -> list:
    """The base's bf16 weights that peft's preparation would upcast (not the 4-bit ones)."""
    import torch

    return [p for p in model.parameters() if p.dtype == torch.bfloat16 and type(p).__name__ != "Params4bit"]
