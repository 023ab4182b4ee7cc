"""The built-in tiny models: a Llama of about a million parameters (`tiny:llama-ko`), a T5 and
a BART of that size (`tiny:t5-ko`, `tiny:bart-ko`) and the zoo's family stand-ins, each with a
byte-level BPE tokenizer trained on the project's own texts, built deterministically from a seed
so every command runs offline on a CPU in seconds.

Two builds give identical files, so the cache directory is named by a fingerprint of
everything that goes into the build; a changed corpus or shape builds a new model.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from harness.data.builtin import assets_dir
from harness.errors import ModelError
from harness.model import zoo
from harness.runtime.files import cache_root

TINY_PREFIX = "tiny:"
BUILD_VERSION = 2

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>"]
# Each turn ends with </s> so that generation stops after the assistant's answer.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

VARIANTS = {
    "llama-ko": dict(
        vocab_size=4096,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        seed=1234,
        lm_head_std=0.15,
    )
}


def is_tiny(ref: str) -> bool:
    return ref.startswith(TINY_PREFIX)


def tiny_names() -> list[str]:

    return [TINY_PREFIX + name for name in [*VARIANTS, *zoo.KOREAN, *zoo.FAMILIES]]


def tiny_model_path(ref: str) -> Path:
    """The directory holding the tiny model `ref`, building it on first use."""

    name = ref[len(TINY_PREFIX) :]
    if ref not in tiny_names():
        raise ModelError(f"{ref}: unknown tiny model; available: {', '.join(tiny_names())}")
    spec = VARIANTS[name] if name in VARIANTS else zoo.spec(name)
    # The encoder-decoders came with the dialogues, so their tokenizers learn from every asset.
    corpus = _corpus_lines(excluded=() if name in zoo.KOREAN else CORPUS_EXCLUDED)
    fingerprint = hashlib.sha256(
        json.dumps({"v": BUILD_VERSION, "name": name, "spec": spec, "corpus": corpus}, ensure_ascii=False).encode()
    ).hexdigest()[:12]
    target = cache_root() / "tiny" / f"{name}-{fingerprint}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        if name in VARIANTS:
            _build(tmp, spec, corpus)
        else:
            _quietly(lambda: zoo.build(tmp, name, corpus, train_bpe))
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache may be shared between users
        try:
            os.replace(tmp, target)
        except OSError:
            # Another process finished the same build first; its files are identical.
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


# Assets added after the tiny models' corpus was frozen: training the tokenizer on them would
# change every tiny model, and with it the goldens and the README's figures, so they stay out.
CORPUS_EXCLUDED = ("dialogue_summarization_ko.jsonl",)


def _corpus_lines(excluded: tuple[str, ...]) -> list[str]:
    """Every text the project ships, in a fixed order, less `excluded`."""
    lines: list[str] = []
    for path in sorted(assets_dir().iterdir()):
        if path.name in excluded:
            continue
        if path.suffix == ".txt":
            lines.extend(path.read_text(encoding="utf-8").splitlines())
        elif path.suffix == ".json":
            lines.extend(_strings(json.loads(path.read_text(encoding="utf-8"))))
        elif path.suffix == ".jsonl":
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    lines.extend(_strings(json.loads(line)))
    return [line for line in lines if line.strip()]


def _strings(node) -> list[str]:
    if isinstance(node, str):
        return node.splitlines()
    if isinstance(node, dict):
        return [s for key in sorted(node) if key not in {"id", "version"} for s in _strings(node[key])]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    return []


def train_bpe(corpus: list[str], vocab_size: int, special_tokens: list[str]):
    """A byte-level BPE `tokenizers.Tokenizer` trained on `corpus`, the special tokens first."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer=trainer)
    return bpe


def _build(out: Path, spec: dict, corpus: list[str]) -> None:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = train_bpe(corpus, spec["vocab_size"], SPECIAL_TOKENS)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        model_max_length=spec["max_position_embeddings"],
        padding_side="left",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(out)

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec["hidden_size"],
        intermediate_size=spec["intermediate_size"],
        num_hidden_layers=spec["num_hidden_layers"],
        num_attention_heads=spec["num_attention_heads"],
        num_key_value_heads=spec["num_key_value_heads"],
        max_position_embeddings=spec["max_position_embeddings"],
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(spec["seed"])
    model = LlamaForCausalLM(config)
    # After the final RMSNorm the hidden state has norm ≈ sqrt(hidden_size), so with the usual
    # 0.02 init the logits cannot move more than about ±2.5 and a LoRA on a random base cannot
    # learn anything visible; a wider output layer gives the adapter room to fit its data.
    with torch.no_grad():
        model.lm_head.weight.normal_(0.0, spec["lm_head_std"], generator=torch.Generator().manual_seed(spec["seed"]))
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
    )
    _quietly(lambda: model.save_pretrained(out))


def _quietly(step) -> None:
    # A one-off internal step: no "Writing model shards" bar on stderr ahead of the command's own output.
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        step()
    finally:
        if bars:
            hf_logging.enable_progress_bar()
