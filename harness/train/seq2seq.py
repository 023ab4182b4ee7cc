"""What changes when the base is an encoder-decoder (T5, mT5, BART, mBART): the template's prompt is
the source (the encoder's input) and its response the target (the labels), trained by transformers'
Seq2SeqTrainer on padded source and target batches (seq2seq_trainer.py). Settings that only make
sense for a decoder-only base are refused by name; LoRA's default targets become the family's own
attention projections; the plan says what is off and why; the memory estimate reads the family's
own size fields."""

from __future__ import annotations

from harness.config import TrainConfig
from harness.data.prompts import load_template
from harness.errors import ConfigError, ModelError
from harness.model.families import base_config, is_encoder_decoder, is_linear
from harness.model.loading import resolve_model_ref
from harness.train.plan import Plan

# Why padding-free batches are off: the plan line's reason (plan_training words it "padding-free off: ...").
PADDED_SOURCE_TARGET = "an encoder-decoder trains with Seq2SeqTrainer on padded source and target batches (no packing)"

# (field, is it asked for, what the field would do, the fix): settings with no meaning on an encoder-decoder.
_DECODER_ONLY = (
    ("data.packing: true", lambda c: c.data.packing, "packs decoder-only rows", "set data.packing: false"),
    (
        "data.loss_on: all",
        lambda c: c.data.loss_on == "all",
        "puts loss on the prompt, which an encoder-decoder reads as its source and never predicts",
        "set data.loss_on: response",
    ),
    (
        "data.chat: true",
        lambda c: c.data.chat,
        "wraps the text in a decoder-only chat template",
        "set data.chat: false (the data.template shapes the source)",
    ),
    (
        "training.liger: true",
        lambda c: c.training.liger is True,
        "patches decoder-only families with Liger's kernels",
        "set training.liger: auto or false",
    ),
    (
        "training.padding_free: true",
        lambda c: c.training.padding_free is True,
        "concatenates decoder-only rows; Seq2SeqTrainer pads source and target",
        "set training.padding_free: auto or false",
    ),
)


def refuse_decoder_only_settings(config: TrainConfig) -> None:
    """Before anything loads: a decoder-only setting, or a template without a response (no target), on an
    encoder-decoder base. The base's config is read only where one of them is asked for."""
    asked = [entry for entry in _DECODER_ONLY if entry[1](config)]
    d = config.data
    no_target = load_template(d.template, d.prompt, d.response, where="data.template").response is None
    if not (asked or no_target) or not _encoder_decoder_base(config.base):
        return
    if asked:
        field, _, does, fix = asked[0]
        raise ConfigError(f"{field} {does}; {config.base} is an encoder-decoder: {fix}")
    raise ConfigError(
        f"data.template: '{d.template}' has no response part, and an encoder-decoder ({config.base}) learns the "
        f"response (its target) from the prompt (its source); choose a template with a response or set data.response"
    )


def _encoder_decoder_base(ref: str) -> bool:
    try:
        config = base_config(resolve_model_ref(ref))
    except ModelError:  # the loader reports a base it cannot find, in its own words
        return False
    return config is not None and is_encoder_decoder(config)


def attention_targets(config: TrainConfig, model) -> tuple[TrainConfig, str]:
    """lora.target_modules left at its default names decoder-only projections (q_proj … o_proj) that T5
    lacks and BART only partly has: on an encoder-decoder they become the attention projections found on
    `model` (self- and cross-attention). Returns the config to train with and the plan line's note ("" when
    nothing changed). Names the user set stay, and a missing one is check_target_modules' error."""
    if model is None or "target_modules" in config.lora.model_fields_set or not is_encoder_decoder(model.config):
        return config, ""
    names: dict[str, None] = {}  # first-seen order: the family's own (q, k, v, o)
    for module in model.modules():
        if type(module).__name__.endswith("Attention"):
            names.update((child, None) for child, sub in module.named_children() if is_linear(sub))
    if not names:
        return config, ""
    lora = config.lora.model_copy(update={"target_modules": list(names)})
    note = f"LoRA on {', '.join(names)}: the attention projections of {model.config.model_type} (default targets)"
    return config.model_copy(update={"lora": lora}), note


def encoder_decoder_plan(plan: Plan, targets_note: str) -> None:
    """The plan line's account of an encoder-decoder run (plan_training has turned padding-free off)."""
    plan.liger = False
    plan.why["liger"] = "Liger off: its kernels patch decoder-only families"
    if targets_note:
        plan.why["lora"] = targets_note


def source_length(config: TrainConfig) -> int:
    return config.data.max_source_length or config.data.max_length


def target_length(config: TrainConfig) -> int:
    return config.data.max_target_length or config.data.max_length


def memory_shape(model_config, rows: list[dict], tokenizer, config: TrainConfig):
    """(token lengths, hidden, intermediate, layers) for fit_to_memory, or a reason it cannot be estimated.

    A row's tokens are its source and target together and the layers the deeper stack's: every layer is
    counted as if it saw both, which over-estimates a little (the decoder's cross-attention aside)."""
    hidden = getattr(model_config, "d_model", None)
    intermediate = getattr(model_config, "d_ff", None) or max(
        getattr(model_config, "encoder_ffn_dim", 0) or 0, getattr(model_config, "decoder_ffn_dim", 0) or 0
    )
    layers = max(
        getattr(model_config, "num_layers", 0) or getattr(model_config, "encoder_layers", 0) or 0,
        getattr(model_config, "num_decoder_layers", 0) or getattr(model_config, "decoder_layers", 0) or 0,
    )
    if not (hidden and intermediate and layers):
        return f"memory fit skipped: {model_config.model_type} names no d_model, feed-forward size or layer count"
    sources = tokenizer([r["prompt"] for r in rows], truncation=True, max_length=source_length(config))["input_ids"]
    targets = tokenizer(text_target=[r["completion"] for r in rows], truncation=True, max_length=target_length(config))
    lengths = [len(s) + len(t) for s, t in zip(sources, targets["input_ids"])]
    return lengths, hidden, intermediate, layers
