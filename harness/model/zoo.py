"""Tiny stand-ins of the model families people fine-tune, built offline like `tiny:llama-ko`.

Each keeps what makes its family differ for harness: the architecture class (and so its layer
types and position handling), tied or separate output embeddings, its special tokens, whether
its tokenizer adds BOS or EOS by itself, whether it has a pad token, and its chat template.
The sizes are not the real ones: a few hundred thousand parameters, so a conformance test can
train, evaluate and merge every family on a CPU in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

LLAMA2_CHAT = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)
LLAMA3_CHAT = (
    "{% for message in messages %}{% set content = '<|start_header_id|>' + message['role'] + "
    "'<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)
MISTRAL_CHAT = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ message['content'] + eos_token }}{% elif message['role'] == 'system' %}"
    "{{ message['content'] + '\\n\\n' }}{% endif %}{% endfor %}"
)
CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
GEMMA_CHAT = (
    "{{ bos_token }}{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)

SHAPE = dict(vocab_size=1024, hidden=64, intermediate=128, layers=2, heads=4, kv_heads=2, positions=1024)
# The built-in encoder-decoders of the dialogue summarization loop: a zoo family at the size of
# tiny:llama-ko, with room to learn the built-in dialogues.
KOREAN_SHAPE = dict(vocab_size=4096, hidden=128, intermediate=256, layers=2, heads=4, kv_heads=2, positions=1024)
KOREAN = {"t5-ko": "t5", "bart-ko": "bart"}


@dataclass(frozen=True)
class Family:
    """One family's stand-in: `specials` in id order (the first get ids 0, 1, …); `roles` maps
    bos/eos/pad/unk to one of them (a missing pad is the family's quirk, as in GPT-2 and Llama-2);
    `adds` is what the tokenizer's post-processor puts around a text; `extra_eos`: more tokens the
    generation config ends on (instruction-tuned Llama-3 and Qwen2 end a turn on their own token)."""

    architecture: str
    config: str
    specials: tuple[str, ...]
    roles: dict[str, str]
    adds: tuple[str, ...] = ()  # "bos" before, "eos" after
    chat_template: str | None = None
    extra_eos: tuple[str, ...] = ()
    tied: bool = False
    options: dict = field(default_factory=dict)  # config fields specific to the family

    @property
    def encoder_decoder(self) -> bool:
        return self.architecture.endswith("ForConditionalGeneration")


FAMILIES = {
    "llama2": Family(
        "LlamaForCausalLM",
        "LlamaConfig",
        ("<unk>", "<s>", "</s>"),
        {"bos": "<s>", "eos": "</s>", "unk": "<unk>"},
        ("bos",),
        LLAMA2_CHAT,
    ),
    "llama3": Family(
        "LlamaForCausalLM",
        "LlamaConfig",
        ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
        {"bos": "<|begin_of_text|>", "eos": "<|eot_id|>"},
        ("bos",),
        LLAMA3_CHAT,
        extra_eos=("<|end_of_text|>",),
        options={"rope_theta": 500000.0},
    ),
    "mistral": Family(
        "MistralForCausalLM",
        "MistralConfig",
        ("<unk>", "<s>", "</s>"),
        {"bos": "<s>", "eos": "</s>", "unk": "<unk>"},
        ("bos",),
        MISTRAL_CHAT,
    ),
    "qwen2": Family(
        "Qwen2ForCausalLM",
        "Qwen2Config",
        ("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
        {"eos": "<|im_end|>", "pad": "<|endoftext|>"},
        (),
        CHATML,
        extra_eos=("<|endoftext|>",),
        tied=True,
    ),
    "gemma": Family(
        "GemmaForCausalLM",
        "GemmaConfig",
        ("<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"),
        {"bos": "<bos>", "eos": "<eos>", "pad": "<pad>", "unk": "<unk>"},
        ("bos",),
        GEMMA_CHAT,
        tied=True,
        options={"head_dim": 16, "hidden_activation": "gelu_pytorch_tanh"},
    ),
    # polyglot-ko: one <|endoftext|> for everything, no chat template, rotary on part of each head.
    "gpt-neox": Family(
        "GPTNeoXForCausalLM",
        "GPTNeoXConfig",
        ("<|endoftext|>", "<|sep|>"),
        {"bos": "<|endoftext|>", "eos": "<|endoftext|>", "pad": "<|endoftext|>"},
        options={"rotary_pct": 0.5, "use_parallel_residual": True},
    ),
    "gpt2": Family(
        "GPT2LMHeadModel",
        "GPT2Config",
        ("<|endoftext|>",),
        {"bos": "<|endoftext|>", "eos": "<|endoftext|>", "unk": "<|endoftext|>"},
        tied=True,
    ),
    # OPT's tokenizer starts every text with </s>, which is also its BOS.
    "opt": Family(
        "OPTForCausalLM",
        "OPTConfig",
        ("<s>", "<pad>", "</s>", "<unk>"),
        {"bos": "</s>", "eos": "</s>", "pad": "<pad>", "unk": "<unk>"},
        ("bos",),
        tied=True,
    ),
    "bloom": Family(
        "BloomForCausalLM",
        "BloomConfig",
        ("<unk>", "<s>", "</s>", "<pad>"),
        {"bos": "<s>", "eos": "</s>", "pad": "<pad>", "unk": "<unk>"},
        tied=True,
    ),
    "t5": Family(
        "T5ForConditionalGeneration",
        "T5Config",
        ("<pad>", "</s>", "<unk>"),
        {"eos": "</s>", "pad": "<pad>", "unk": "<unk>"},
        ("eos",),
        tied=True,
    ),
    "bart": Family(
        "BartForConditionalGeneration",
        "BartConfig",
        ("<s>", "<pad>", "</s>", "<unk>"),
        {"bos": "<s>", "eos": "</s>", "pad": "<pad>", "unk": "<unk>"},
        ("bos", "eos"),
        tied=True,
    ),
}

# mT5: T5's tokens and tokenizer, a gated-GELU feed-forward and an output layer of its own.
FAMILIES["mt5"] = replace(
    FAMILIES["t5"],
    architecture="MT5ForConditionalGeneration",
    config="MT5Config",
    tied=False,
    options={"feed_forward_proj": "gated-gelu"},
)
# mBART: BART's tokens, but layer norm before each block, scaled embeddings, and a tokenizer that
# ends a text with </s> and starts none with <s>.
FAMILIES["mbart"] = replace(
    FAMILIES["bart"],
    architecture="MBartForConditionalGeneration",
    config="MBartConfig",
    adds=("eos",),
    options={"scale_embedding": True},
)


def spec(name: str) -> dict:
    """What goes into the build's fingerprint."""
    family = FAMILIES[KOREAN.get(name, name)]
    return {
        "family": KOREAN.get(name, name),
        "shape": KOREAN_SHAPE if name in KOREAN else SHAPE,
        "architecture": family.architecture,
        "specials": family.specials,
        "roles": family.roles,
        "adds": family.adds,
        "chat_template": family.chat_template,
        "extra_eos": family.extra_eos,
        "tied": family.tied,
        "options": family.options,
        "seed": 4321,
    }


def build(out: Path, name: str, corpus: list[str], train_bpe) -> None:
    """Write the tokenizer and the randomly initialised model of family `name` to `out`.
    `train_bpe(corpus, vocab_size, specials)` is the project's one BPE training path."""
    import torch
    import transformers

    family, shape = FAMILIES[KOREAN.get(name, name)], spec(name)["shape"]
    tokenizer = _tokenizer(family, train_bpe(corpus, shape["vocab_size"], list(family.specials)), shape)
    tokenizer.save_pretrained(out)
    ids = {role: tokenizer.convert_tokens_to_ids(token) for role, token in family.roles.items()}
    config = getattr(transformers, family.config)(**_config_fields(family, shape, len(tokenizer), ids))
    torch.manual_seed(spec(name)["seed"])
    model = getattr(transformers, family.architecture)(config)
    _untie(model, family)
    _widen_output(model, spec(name)["seed"])
    eos = [ids["eos"]] + [tokenizer.convert_tokens_to_ids(t) for t in family.extra_eos]
    model.generation_config = transformers.GenerationConfig(
        bos_token_id=ids.get("bos"),
        eos_token_id=eos if len(eos) > 1 else eos[0],
        pad_token_id=ids.get("pad"),
        do_sample=False,
        **({"decoder_start_token_id": config.decoder_start_token_id} if family.encoder_decoder else {}),
    )
    model.save_pretrained(out)


def _tokenizer(family: Family, bpe, shape: dict):
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    roles = family.roles
    if family.adds:
        before = [roles["bos"]] if "bos" in family.adds else []
        after = [roles["eos"]] if "eos" in family.adds else []
        marks = before + after
        bpe.post_processor = processors.TemplateProcessing(
            single=" ".join(before + ["$A"] + after),
            pair=" ".join(before + ["$A"] + after + before + ["$B"] + after),
            special_tokens=[(t, bpe.token_to_id(t)) for t in dict.fromkeys(marks)],
        )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        model_max_length=shape["positions"],
        **{f"{role}_token": token for role, token in roles.items()},
    )
    tokenizer.chat_template = family.chat_template
    return tokenizer


# Each config class's names for SHAPE's sizes.
_LLAMA_LIKE = {
    "hidden_size": "hidden",
    "intermediate_size": "intermediate",
    "num_hidden_layers": "layers",
    "num_attention_heads": "heads",
    "num_key_value_heads": "kv_heads",
    "max_position_embeddings": "positions",
}
_T5_LIKE = {"d_model": "hidden", "d_ff": "intermediate", "num_layers": "layers", "num_heads": "heads"}
_BART_LIKE = {
    "d_model": "hidden",
    "encoder_ffn_dim": "intermediate",
    "decoder_ffn_dim": "intermediate",
    "encoder_layers": "layers",
    "decoder_layers": "layers",
    "encoder_attention_heads": "heads",
    "decoder_attention_heads": "heads",
    "max_position_embeddings": "positions",
}
_SIZE_NAMES = {
    "LlamaConfig": _LLAMA_LIKE,
    "MistralConfig": _LLAMA_LIKE,
    "Qwen2Config": _LLAMA_LIKE,
    "GemmaConfig": _LLAMA_LIKE,
    "GPTNeoXConfig": {
        "hidden_size": "hidden",
        "intermediate_size": "intermediate",
        "num_hidden_layers": "layers",
        "num_attention_heads": "heads",
        "max_position_embeddings": "positions",
    },
    "GPT2Config": {
        "n_embd": "hidden",
        "n_inner": "intermediate",
        "n_layer": "layers",
        "n_head": "heads",
        "n_positions": "positions",
    },
    "OPTConfig": {
        "hidden_size": "hidden",
        "ffn_dim": "intermediate",
        "num_hidden_layers": "layers",
        "num_attention_heads": "heads",
        "max_position_embeddings": "positions",
        "word_embed_proj_dim": "hidden",
    },
    "BloomConfig": {"hidden_size": "hidden", "n_layer": "layers", "n_head": "heads"},
    "T5Config": _T5_LIKE,
    "MT5Config": _T5_LIKE,
    "BartConfig": _BART_LIKE,
    "MBartConfig": _BART_LIKE,
}


def _config_fields(family: Family, shape: dict, vocab: int, ids: dict) -> dict:
    common = dict(
        vocab_size=vocab,
        bos_token_id=ids.get("bos"),
        eos_token_id=ids["eos"],
        pad_token_id=ids.get("pad"),
        tie_word_embeddings=family.tied,
    )
    sizes = {name: shape[size] for name, size in _SIZE_NAMES[family.config].items()}
    return {**common, **sizes, **_config_extras(family.config, shape, ids), **family.options}


def _config_extras(config: str, shape: dict, ids: dict) -> dict:
    """Fields a config class needs beyond the sizes."""
    if config == "MistralConfig":
        return {"sliding_window": None}  # v0.2 onwards attends to the whole context
    if config in {"T5Config", "MT5Config"}:
        return {"d_kv": shape["hidden"] // shape["heads"], "decoder_start_token_id": ids["pad"]}
    if config in {"BartConfig", "MBartConfig"}:
        return {"decoder_start_token_id": ids["eos"], "forced_eos_token_id": ids["eos"]}
    return {}


def _untie(model, family: Family) -> None:
    """Give an untied family its own output layer where the class ties it whatever the config says
    (transformers' MT5Config always asks for ties; a checkpoint holding a different lm_head, as the
    real mT5 does, loads untied)."""
    import torch

    head = model.get_output_embeddings()
    if not family.tied and head.weight is model.get_input_embeddings().weight:
        head.weight = torch.nn.Parameter(head.weight.detach().clone())


def _widen_output(model, seed: int) -> None:
    """A random base's logits barely move with the usual init, so greedy answers hang on ties a
    rounding difference can flip; wider output weights give clear winners (see tiny.py)."""
    import torch

    head = model.get_output_embeddings()
    with torch.no_grad():
        head.weight.normal_(0.0, 0.15, generator=torch.Generator().manual_seed(seed))
