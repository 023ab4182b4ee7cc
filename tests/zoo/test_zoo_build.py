"""The zoo's stand-ins: built offline and byte-identically from a seed, a few hundred thousand
parameters each, and faithful to their family where harness behaves differently: architecture
and layer types, tied output embeddings, the tokenizer's BOS/EOS behaviour, a pad token or
none, and a chat template or none."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from zoo_helpers import DECODERS, ENCODER_DECODERS, WITH_CHAT_TEMPLATE

# family: (architecture, tied embeddings, tokenizer adds BOS, has its own pad token)
QUIRKS = {
    "llama2": ("LlamaForCausalLM", False, True, False),
    "llama3": ("LlamaForCausalLM", False, True, False),
    "mistral": ("MistralForCausalLM", False, True, False),
    "qwen2": ("Qwen2ForCausalLM", True, False, True),
    "gemma": ("GemmaForCausalLM", True, True, True),
    "gpt-neox": ("GPTNeoXForCausalLM", False, False, True),
    "gpt2": ("GPT2LMHeadModel", True, False, False),
    "opt": ("OPTForCausalLM", True, True, True),
    "bloom": ("BloomForCausalLM", True, False, True),
    "t5": ("T5ForConditionalGeneration", True, False, True),
    "bart": ("BartForConditionalGeneration", True, True, True),
    "mt5": ("MT5ForConditionalGeneration", False, False, True),
    "mbart": ("MBartForConditionalGeneration", True, False, True),
}


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_two_builds_are_byte_identical(tmp_path, monkeypatch):
    from harness.model.tiny import tiny_model_path

    builds = []
    for name in ("cache-a", "cache-b"):
        monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / name))
        builds.append({family: _digests(tiny_model_path(f"tiny:{family}")) for family in QUIRKS})
    assert builds[0] == builds[1]


@pytest.mark.parametrize("family", list(QUIRKS))
def test_stand_in_keeps_its_family_quirks(family):
    import transformers
    from transformers import AutoConfig, AutoTokenizer

    from harness.model.tiny import tiny_model_path

    architecture, tied, adds_bos, has_pad = QUIRKS[family]
    path = tiny_model_path(f"tiny:{family}")
    config = AutoConfig.from_pretrained(path)
    assert config.architectures == [architecture]
    assert bool(config.is_encoder_decoder) == (family in ENCODER_DECODERS)
    model = getattr(transformers, architecture).from_pretrained(path)
    assert 100_000 <= sum(p.numel() for p in model.parameters()) <= 500_000
    tied_now = model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    assert tied_now == tied
    tokenizer = AutoTokenizer.from_pretrained(path)
    ids = tokenizer("안녕 hello").input_ids
    assert (ids[0] == tokenizer.bos_token_id) == adds_bos
    assert (tokenizer.pad_token is not None) == has_pad
    assert bool(tokenizer.chat_template) == (family in WITH_CHAT_TEMPLATE)
    if family == "gpt2":
        from transformers.pytorch_utils import Conv1D

        assert isinstance(model.transformer.h[0].attn.c_attn, Conv1D)
    if family == "mt5":
        assert config.is_gated_act and hasattr(model.encoder.block[0].layer[1].DenseReluDense, "wi_1")
    if family in {"bart", "mbart"}:
        assert config.decoder_start_token_id == tokenizer.eos_token_id
        # mBART normalizes before each block and once more after the last; BART after each block.
        assert hasattr(model.model.encoder, "layer_norm") == (family == "mbart")


def test_zoo_names_every_family():
    from harness.model.tiny import tiny_names

    built_in = {"tiny:llama-ko", "tiny:t5-ko", "tiny:bart-ko"}
    assert {f"tiny:{f}" for f in DECODERS + ENCODER_DECODERS} | built_in == set(tiny_names())


@pytest.mark.parametrize(
    ("name", "architecture"), [("t5-ko", "T5ForConditionalGeneration"), ("bart-ko", "BartForConditionalGeneration")]
)
def test_korean_encoder_decoders_know_the_dialogues(name, architecture):
    """The built-in encoder-decoders are their zoo family at tiny:llama-ko's size, with a tokenizer that
    learnt the dialogue sample too (the decoder-only tiny models' corpus stays frozen without it)."""
    import transformers
    from transformers import AutoTokenizer

    from harness.model.tiny import tiny_model_path

    path = tiny_model_path(f"tiny:{name}")
    model = getattr(transformers, architecture).from_pretrained(path)
    assert model.config.is_encoder_decoder and model.config.vocab_size == 4096
    tokenizer = AutoTokenizer.from_pretrained(path)
    zoo_tokenizer = AutoTokenizer.from_pretrained(tiny_model_path(f"tiny:{name.removesuffix('-ko')}"))
    speaker_line = "민지: 오늘 회의 자료 다 정리했어?"
    assert len(tokenizer(speaker_line).input_ids) < len(zoo_tokenizer(speaker_line).input_ids)
