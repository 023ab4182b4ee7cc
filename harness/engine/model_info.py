"""What the engine reads off a model and its tokenizer: its context, its decoder's config, the
tokens that end an answer, and whether the static-cache decoder can run it."""

from __future__ import annotations

import functools

from harness.config.generation import GenerationSettings
from harness.model.families import explicit_mask_mismatch, is_encoder_decoder


def encoder_decoder(model) -> bool:
    """Whether `model` reads its prompt with an encoder and writes with a decoder (T5, BART)."""
    return is_encoder_decoder(model.config)


def context_length(model) -> int | None:
    """Tokens a decoder-only model's prompt and answer share; on an encoder-decoder, the tokens of
    its encoder input (and, separately, of its decoder's output): its learned positions (BART), or
    None where relative positions set no limit (T5)."""
    config = model.config
    if is_encoder_decoder(config) and getattr(config, "relative_attention_num_buckets", None):
        return None
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def text_config(model):
    """The decoder's config (a multimodal model nests it)."""
    config = model.config
    return config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config


def end_ids(model, tokenizer) -> list[int]:
    """The tokens that end an answer: the tokenizer's eos and those the model's generation config
    names, on which `generate` stops by default (an instruction-tuned Llama-3 or Qwen2 ends a turn
    on one token and a text on another)."""
    ids = []
    for source in (tokenizer.eos_token_id, getattr(getattr(model, "generation_config", None), "eos_token_id", None)):
        ids += source if isinstance(source, list) else [source]
    return list(dict.fromkeys(i for i in ids if i is not None))


def supported(model, settings: GenerationSettings) -> str:
    """Why the static-cache decoder cannot run `settings` on `model` ("" when it can)."""
    if encoder_decoder(model):
        return "encoder-decoder"
    if settings.num_beams > 1:
        return "beam search"
    impl = getattr(model.config, "_attn_implementation", None)
    if impl not in ("sdpa", "eager"):
        return f"attention implementation {impl}"
    if getattr(model.config, "sliding_window", None) or (
        getattr(model.config, "layer_types", None) and any(t != "full_attention" for t in model.config.layer_types)
    ):
        return "sliding-window attention"
    if settings.repetition_penalty != 1.0 and not penalty_skips_padding():
        return "repetition_penalty with this transformers version (it cannot skip each row's own padding)"
    return explicit_mask_mismatch(model)


@functools.cache
def penalty_skips_padding() -> bool:
    """Whether transformers' repetition penalty takes a per-row `prompt_ignore_length`, which the
    decoder passes so left padding does not count as text a row holds; older releases in harness's
    range take a single int and refuse the rows' tensor."""
    import torch
    from transformers import RepetitionPenaltyLogitsProcessor

    try:
        RepetitionPenaltyLogitsProcessor(penalty=1.5, prompt_ignore_length=torch.tensor([0, 1]))
    except (ValueError, TypeError):
        return False
    return True
