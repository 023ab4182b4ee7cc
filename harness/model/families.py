"""What differs between model families, decided where possible by checking the model itself.

- Encoder-decoder bases (T5, mT5, BART, mBART, …) load as `AutoModelForSeq2SeqLM`, train with peft's
  sequence-to-sequence task type and generate on transformers' `generate`: `AutoModelForCausalLM`
  on such a config would build the decoder alone (BART) and score a model without its encoder. One
  without a sequence-to-sequence class in transformers (speech or vision encoders) is refused
  before any work.
- Padding-free batches are exact only where the model honours per-sequence position ids and the
  block-diagonal mask they imply; OPT, Bloom and others ignore them and let packed sequences see
  each other. `packing_mismatch` runs two sequences packed and apart through the loaded model.
- The fast engine feeds an explicit additive mask over its static cache; a model that builds its
  attention biases from a padding mask instead (Bloom's ALiBi) decodes with `generate`
  (`explicit_mask_mismatch`).
- GPT-2 style `Conv1D` layers are linear layers with the weight stored transposed: valid LoRA
  targets, and a dequantized export must keep their layout.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.errors import ModelError, describe

# A packed sequence's logits may differ from its own by rounding only: kernels see other shapes.
PACKING_TOLERANCE = {"float32": 1e-3, "bfloat16": 5e-2, "float16": 2e-2}


def check_base(ref: str, path: str) -> None:
    """Refuse a base harness cannot serve, from its config.json alone (before any weight loads)."""
    config = base_config(path)
    if config is not None:
        refuse_unservable(ref, config)


def base_config(path: str) -> dict | None:
    """config.json of a local directory or a hub id (its config alone is fetched); None where it cannot
    be read, which the loader then reports in its own words."""
    config_file = Path(path) / "config.json"
    try:
        if config_file.is_file():
            return json.loads(config_file.read_text(encoding="utf-8"))
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(path).to_dict()
    except Exception:
        return None


def is_encoder_decoder(config) -> bool:
    """Whether a model config (an object or its dict) describes an encoder-decoder."""
    value = config.get("is_encoder_decoder") if isinstance(config, dict) else getattr(config, "is_encoder_decoder", 0)
    return bool(value)


def model_class(config):
    """The transformers auto class a base of `config` loads with."""
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    return AutoModelForSeq2SeqLM if is_encoder_decoder(config) else AutoModelForCausalLM


def decoder_start(model) -> int:
    """The token an encoder-decoder's decoder starts from (T5: pad, BART and mBART: </s>): its config's,
    with which its forward shifts labels into decoder inputs, else its generation config's."""
    for config in (model.config, getattr(model, "generation_config", None)):
        start = getattr(config, "decoder_start_token_id", None)
        if start is not None:
            return int(start)
    raise ModelError(
        f"{type(model).__name__}: its config names no decoder_start_token_id; set it in the base's config.json"
    )


def peft_task_type(config) -> str:
    return "SEQ_2_SEQ_LM" if is_encoder_decoder(config) else "CAUSAL_LM"


def refuse_unservable(ref: str, config: dict) -> None:
    """An encoder-decoder transformers has no text-to-text class for (speech, vision) cannot be trained or
    scored as one."""
    if not is_encoder_decoder(config):
        return
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES

    family = config.get("model_type", "?")
    if family in MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES:
        return
    architecture = (config.get("architectures") or ["?"])[0]
    raise ModelError(
        f"{ref}: {family} ({architecture}) is an encoder-decoder without a text-to-text class in transformers "
        f"(AutoModelForSeq2SeqLM); harness serves decoder-only LMs and text encoder-decoders such as T5, mT5, "
        f"BART and mBART"
    )


def is_linear(module) -> bool:
    """A layer LoRA can target: nn.Linear, GPT-2's Conv1D, or their bitsandbytes 4-/8-bit forms."""
    import torch
    from transformers.pytorch_utils import Conv1D

    return isinstance(module, (torch.nn.Linear, Conv1D)) or type(module).__name__ in {"Linear4bit", "Linear8bitLt"}


def was_conv1d(module) -> bool:
    """Whether a (quantized) layer stands in for a Conv1D: transformers quantizes one as a Linear4bit
    holding the transposed weight and remembers its source class."""
    from transformers.pytorch_utils import Conv1D

    source = getattr(module, "source_cls", None)
    return isinstance(module, Conv1D) or (isinstance(source, type) and issubclass(source, Conv1D))


def packing_mismatch(model, pad_token_id: int) -> str:
    """Why padding-free batches would not give the padded result on `model` ("" when they do).

    Two short sequences go through the model once each and once packed the way TRL's padding-free
    collator packs them (position ids restarting, no attention mask); the packed second sequence
    must see only itself."""
    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    vocab = model.get_input_embeddings().weight.shape[0]
    generator = torch.Generator().manual_seed(0)
    first, second = (torch.randint(0, vocab, (n,), generator=generator).tolist() for n in (7, 5))
    collate = DataCollatorForLanguageModeling(pad_token_id=pad_token_id, padding_free=True)
    batch = collate([{"input_ids": first}, {"input_ids": second}])
    batch.pop("labels", None)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            # No cache, as in training: with one, transformers takes the row for one sequence.
            alone = model(input_ids=torch.tensor([second], device=device), use_cache=False).logits[0].float()
            packed = model(**{k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}, use_cache=False)
    except (TypeError, ValueError, RuntimeError) as exc:
        return f"its forward does not take packed batches ({describe(exc, 100)})"
    finally:
        model.train(was_training)
    got = packed.logits[0, len(first) :].float()
    gap = float((got - alone).abs().max())
    scale = float(alone.abs().max())
    dtype = str(packed.logits.dtype).removeprefix("torch.")
    if gap > PACKING_TOLERANCE.get(dtype, 5e-2) * max(1.0, scale):
        return (
            f"a packed sequence's logits differ from its own by {gap:.3g} (of {scale:.3g}): "
            f"{type(model).__name__} lets packed sequences attend to each other"
        )
    return ""


_MASK_CHECKS: dict[tuple, str] = {}


def explicit_mask_mismatch(model) -> str:
    """Why `model` cannot run from an explicit [rows, 1, queries, keys] additive mask, as the fast
    engine's static cache feeds it ("" when it can). Bloom, for one, builds its ALiBi biases from a
    [rows, keys] padding mask and fails on any other. Checked once per architecture and attention
    implementation: a causal 4D mask must give what the usual padding mask gives."""
    config = model.config
    key = (type(config), getattr(config, "_attn_implementation", None))
    if key not in _MASK_CHECKS:
        _MASK_CHECKS[key] = _check_explicit_mask(model)
    return _MASK_CHECKS[key]


def _check_explicit_mask(model) -> str:
    import torch

    vocab = model.get_input_embeddings().weight.shape[0]
    device = next(model.parameters()).device
    ids = torch.randint(0, vocab, (1, 5), generator=torch.Generator().manual_seed(0)).to(device)
    dtype = model.get_input_embeddings().weight.dtype
    dtype = dtype if dtype in (torch.float16, torch.bfloat16) else torch.float32
    causal = torch.ones((5, 5), dtype=torch.bool, device=device).tril()
    mask = torch.zeros((1, 1, 5, 5), dtype=dtype, device=device).masked_fill_(~causal, torch.finfo(dtype).min)
    with torch.no_grad():
        usual = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).logits.float()
        try:
            got = model(
                input_ids=ids, attention_mask=mask, position_ids=torch.arange(5, device=device)[None], use_cache=False
            ).logits.float()
        except (TypeError, ValueError, RuntimeError) as exc:
            return f"{type(model).__name__} takes no explicit attention mask ({type(exc).__name__})"
    gap = float((got - usual).abs().max())
    if gap > PACKING_TOLERANCE.get(str(dtype).removeprefix("torch."), 5e-2) * max(1.0, float(usual.abs().max())):
        return f"{type(model).__name__} computes otherwise with an explicit attention mask"
    return ""
