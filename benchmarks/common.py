"""What every benchmark shares: the 7B-shaped model, the data, memory figures."""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LLAMA2_7B = dict(
    vocab_size=32000,
    hidden_size=4096,
    intermediate_size=11008,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=32,
    max_position_embeddings=4096,
)
SEED_LORA = dict(r=16, alpha=32, dropout=0.05, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])


def seed_training(steps: int, batch: int, accumulation: int, smoke: bool) -> dict:
    """The seed tutorials' training settings (paged 8-bit AdamW, recomputation on a GPU run)."""
    return {
        "max_steps": steps,
        "batch_size": batch,
        "gradient_accumulation": accumulation,
        "learning_rate": 2e-4,
        "warmup": 0,
        "logging_steps": 1,
        "save_steps": 10_000,
        "optimizer": "adamw_torch" if smoke else "paged_adamw_8bit",
        "gradient_checkpointing": not smoke,
        "seed": 42,
    }


def korquad_path(arg: str | None) -> str:
    for candidate in (
        arg,
        os.environ.get("KORQUAD_DEV"),
        ROOT / ".bench" / "KorQuAD_v1.0_dev.json",
        ROOT.parent / "shared" / "data" / "korquad" / "KorQuAD_v1.0_dev.json",
    ):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    sys.exit("KorQuAD dev not found: pass --korquad PATH or set KORQUAD_DEV")


def build_model(directory: Path, data: str) -> str:
    """A Llama-2-7B-shaped checkpoint with random bf16 weights and a KorQuAD-trained tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if (directory / "config.json").is_file():
        return str(directory)
    started = time.time()
    tokenizer = train_tokenizer(data, padding_side="left")
    config = LlamaConfig(**LLAMA2_7B, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = LlamaForCausalLM(config)
    torch.set_default_dtype(torch.float32)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    del model
    free()
    print(f"built 7B-shaped model in {time.time() - started:.0f} s → {directory}", flush=True)
    return str(directory)


def train_tokenizer(data: str, padding_side: str, adds_eos: bool = False):
    """A 32,000-token byte-level BPE trained on KorQuAD's passages and questions (<pad> <s> </s> <unk>
    first); `adds_eos`: it ends every text with </s>, as an encoder-decoder's tokenizer does."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    doc = json.loads(Path(data).read_text(encoding="utf-8"))
    texts = [p["context"] for a in doc["data"] for p in a["paragraphs"]]
    texts += [q["question"] for a in doc["data"] for p in a["paragraphs"] for q in p["qas"]]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=LLAMA2_7B["vocab_size"],
            special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    if adds_eos:
        bpe.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 2)])
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        padding_side=padding_side,
    )


def free():
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
    except ImportError:
        pass


def device_map():
    import torch

    return {"": 0} if torch.cuda.is_available() else None


def peak() -> int | None:
    import torch

    return int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else None
