"""The built-in tiny model: deterministic, small, a real Llama, a Korean-capable tokenizer with a
chat template, and loadable in 4-bit NF4 on CPU through the same loader every command uses."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from harness.errors import ModelError

KOREAN_SAMPLES = [
    "은솔마을은 강원도 깊은 산골짜기에 자리한 작은 마을이다.",
    "매년 가을 은행나무 아래에서 열리는 행사는 무엇인가?",
    "### 문맥:\n한국어 문장과 English words, 숫자 1962년, 기호 ~!@#$%^&*()\n\n### 답변:\n",
    "  앞뒤 공백과\t탭,  그리고 줄바꿈\n",
    "코퍼스에 없을 법한 글자: 뷁 똠방각하 😀 ㄱㄴㄷ ㅏㅑ",
]


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_two_builds_are_byte_identical(tmp_path, monkeypatch, tiny_ref):
    from harness.model.tiny import tiny_model_path

    paths = []
    for name in ("cache-a", "cache-b"):
        monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / name))
        path = tiny_model_path(tiny_ref)
        assert path.is_relative_to(tmp_path / name)
        paths.append(path)
    assert paths[0].name == paths[1].name  # same fingerprint
    a, b = _digests(paths[0]), _digests(paths[1])
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(a)
    assert a == b
    # No half-built temporary directories are left next to the result.
    assert [p.name for p in paths[0].parent.iterdir()] == [paths[0].name]
    # A second call reuses the build instead of rebuilding.
    mtime = (paths[1] / "model.safetensors").stat().st_mtime_ns
    assert tiny_model_path(tiny_ref) == paths[1]
    assert (paths[1] / "model.safetensors").stat().st_mtime_ns == mtime


def test_tiny_is_a_small_llama(tiny_path):
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_path)
    assert isinstance(model, LlamaForCausalLM)
    n_params = sum(p.numel() for p in model.parameters())
    assert 300_000 <= n_params <= 5_000_000, n_params


@pytest.mark.parametrize("text", KOREAN_SAMPLES)
def test_tokenizer_round_trips_korean(tiny_path, text):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_path)
    ids = tokenizer(text, add_special_tokens=False).input_ids
    assert ids and tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids) == text


def test_tokenizer_is_trained_on_korean(tiny_path):
    """A byte-level BPE trained on the Korean corpus packs common Korean words into few tokens."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_path)
    text = KOREAN_SAMPLES[1]
    n_tokens = len(tokenizer(text, add_special_tokens=False).input_ids)
    assert n_tokens < len(text.encode("utf-8")) / 3, n_tokens


def test_chat_template_renders(tiny_path):
    from transformers import AutoTokenizer

    from harness.data.prompts import apply_chat_template

    tokenizer = AutoTokenizer.from_pretrained(tiny_path)
    assert tokenizer.chat_template
    messages = [{"role": "user", "content": "안녕하세요?"}, {"role": "assistant", "content": "네, 안녕하세요."}]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False)
    assert rendered == "<|user|>\n안녕하세요?</s>\n<|assistant|>\n네, 안녕하세요.</s>\n"
    prompt = apply_chat_template(tokenizer, "질문", system="시스템")
    assert prompt == "<|system|>\n시스템</s>\n<|user|>\n질문</s>\n<|assistant|>\n"
    # The role markers are single special tokens, and turns end with EOS so generation stops.
    ids = tokenizer(rendered, add_special_tokens=False).input_ids
    assert tokenizer.convert_tokens_to_ids("<|user|>") in ids
    assert ids.count(tokenizer.eos_token_id) == 2


def test_loads_in_4bit_nf4(tiny_ref):
    import bitsandbytes as bnb
    import torch

    from harness.config import Quantization
    from harness.model.loading import load_base
    from harness.runtime.env import detect

    base = load_base(tiny_ref, Quantization(), detect())
    model = base.model
    assert base.compute_dtype == "fp32"
    assert getattr(model, "is_loaded_in_4bit", False)
    layers = {name: m for name, m in model.model.layers.named_modules() if isinstance(m, torch.nn.Linear)}
    assert len(layers) == 2 * 7  # q, k, v, o, gate, up, down per decoder layer
    for name, module in layers.items():
        assert isinstance(module, bnb.nn.Linear4bit), name
        assert module.weight.quant_type == "nf4", name
        assert module.weight.quant_state.nested, name  # double quantization is on by default
    with torch.no_grad():
        ids = base.tokenizer("안녕하세요", return_tensors="pt", add_special_tokens=False).input_ids
        logits = model(input_ids=ids).logits
    assert logits.shape == (1, ids.shape[1], len(base.tokenizer))
    assert torch.isfinite(logits).all()


def test_unknown_tiny_name_is_a_model_error(tiny_ref):
    from harness.config import Quantization
    from harness.model.loading import load_base
    from harness.model.tiny import tiny_model_path
    from harness.runtime.env import detect

    with pytest.raises(ModelError, match="tiny:llama-ko"):
        tiny_model_path("tiny:gpt-ko")
    with pytest.raises(ModelError, match="unknown tiny model"):
        load_base("tiny:nope", Quantization(), detect())
