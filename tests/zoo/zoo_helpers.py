"""The plain references the zoo's conformance tests check harness against, computed with
transformers, peft and bitsandbytes alone: no harness code decides what a right answer is."""

from __future__ import annotations

import json
from pathlib import Path

from support import one_torch_thread  # noqa: F401 - the tests import it from here

# Each family's usual LoRA targets, as its fine-tuning recipes name them.
USUAL_TARGETS = {
    "llama2": ["q_proj", "v_proj"],
    "llama3": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "mistral": ["q_proj", "v_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "gemma": ["q_proj", "v_proj"],
    "gpt-neox": ["query_key_value"],
    "gpt2": ["c_attn", "c_proj"],
    "opt": ["q_proj", "v_proj"],
    "bloom": ["query_key_value"],
}
DECODERS = list(USUAL_TARGETS)
ENCODER_DECODERS = ["t5", "bart", "mt5", "mbart"]
# An encoder-decoder's attention projections in every block (encoder self, decoder self and cross).
SEQ2SEQ_TARGETS = {"t5": ["q", "v"], "mt5": ["q", "v"], "bart": ["q_proj", "v_proj"], "mbart": ["q_proj", "v_proj"]}
WITH_CHAT_TEMPLATE = {"llama2", "llama3", "mistral", "qwen2", "gemma"}

# Prompts of different lengths, so a batch of eight is left-padded.
PROMPTS = [
    "한국의 수도는",
    "은솔마을은 1962년에 광산 노동자들이 모여 만든 마을이다. 은솔마을은 언제 생겼는가?",
    "The quick brown fox",
    "### 질문:\n가장 큰 항구 도시는?\n\n### 답변:\n",
    "Summarise in one sentence why the sky is blue.",
    "서울",
    "오늘 날씨가 맑아서 공원에 산책을 나갔다. 공원에는 사람들이 많았고 아이들이 뛰어놀고 있었다.",
    "Hello",
]
NEW_TOKENS = 10
ADAPTER = "zoo"

# Logits of the same model computed two ways (batched or not, merged or not) in float32.
LOGIT_TOLERANCE = 1e-3


def plain_4bit_layout(model) -> None:
    """bitsandbytes repacks 4-bit weights for its AVX512-BF16 kernel on the first eval forward and
    then computes in bf16 whatever compute dtype was asked for; the reference keeps the exact
    float32 path (a bitsandbytes switch, not harness code)."""
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def load_reference(base_path: str, adapter_dir: Path | None = None, four_bit: bool = True):
    """(model, tokenizer): the base in 4-bit NF4 (as the adapter was trained) or float32, with peft's
    PeftModel on top where an adapter is given."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer, BitsAndBytesConfig

    auto = AutoModelForSeq2SeqLM if AutoConfig.from_pretrained(base_path).is_encoder_decoder else AutoModelForCausalLM
    kwargs = {"dtype": torch.float32}
    if four_bit:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.float32,
        )
    model = auto.from_pretrained(base_path, **kwargs)
    plain_4bit_layout(model)
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_dir))
    return model.eval(), AutoTokenizer.from_pretrained(base_path)


def seq2seq_adapter(base_path: str, out: Path, targets: list[str], seed: int = 0) -> Path:
    """A LoRA adapter made by peft alone on a float32 encoder-decoder, initialised at random (not at
    zero), so it moves the logits as a trained one does; saved to `out`."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSeq2SeqLM

    torch.manual_seed(seed)
    model = AutoModelForSeq2SeqLM.from_pretrained(base_path, dtype=torch.float32)
    config = LoraConfig(task_type="SEQ_2_SEQ_LM", init_lora_weights=False, target_modules=targets, r=4, lora_alpha=8)
    get_peft_model(model, config).save_pretrained(out)
    return out


def decoder_logits(model, source_ids, decoder_ids):
    """An encoder-decoder's logits (float32) over `decoder_ids` (1 × m) given the source (1 × n)."""
    import torch

    with torch.inference_mode():
        return model(input_ids=source_ids, decoder_input_ids=decoder_ids).logits[0].float()


def stop_ids(model, tokenizer) -> set[int]:
    eos = model.generation_config.eos_token_id
    ids = set(eos) if isinstance(eos, list) else {eos}
    return ids | {tokenizer.eos_token_id}


def greedy(model, tokenizer, prompt_ids: list[int], repetition_penalty: float = 1.0) -> list[int]:
    """Batch-1 `generate`, greedy: the new tokens up to (not including) the first end token."""
    import torch

    ids = torch.tensor([prompt_ids], device=model.device)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with torch.inference_mode():
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=NEW_TOKENS,
            do_sample=False,
            pad_token_id=pad,
            repetition_penalty=repetition_penalty if repetition_penalty != 1.0 else None,
        )
    # an encoder-decoder's output is the decoder's: its start token, then the new ones
    new = out[0, 1 if model.config.is_encoder_decoder else ids.shape[1] :].tolist()
    ends = stop_ids(model, tokenizer)
    for n, token in enumerate(new):
        if token in ends:
            return new[:n]
    return new


def prompt_ids(tokenizer, text: str, chat: bool) -> list[int]:
    """A prompt's tokens as the tokenizer itself gives them: its chat template tokenized by
    `apply_chat_template`, or the text with the tokenizer's own special tokens."""
    if chat:
        out = tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=True, add_generation_prompt=True
        )
        return list(out["input_ids"] if hasattr(out, "keys") else out)
    return tokenizer(text).input_ids


def answer(model, tokenizer, text: str, chat: bool, repetition_penalty: float) -> dict:
    """What a record should hold for `text`: the prompt's token count, the new tokens, the text."""
    ids = prompt_ids(tokenizer, text, chat)
    new = greedy(model, tokenizer, ids, repetition_penalty)
    return {
        "prompt_tokens": len(ids),
        "generated_tokens": len(new),
        "output": tokenizer.decode(new, skip_special_tokens=True),
    }


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def last_logits(model, tokenizer, text: str):
    """The last position's logits (float32) for `text` tokenized without special tokens."""
    import torch

    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids[:, -256:]
    with torch.inference_mode():
        return model(input_ids=ids).logits[0, -1].float()


def packs_exactly(model, tolerance: float = LOGIT_TOLERANCE) -> bool:
    """Whether two sequences packed in one row (position ids restarting, no attention mask, no
    cache: a padding-free training batch) give the second one the logits it has alone."""
    import torch

    first, second = torch.arange(3, 10), torch.arange(20, 25)
    with torch.inference_mode():
        alone = model(input_ids=second[None], use_cache=False).logits[0]
        packed = model(
            input_ids=torch.cat([first, second])[None],
            use_cache=False,
            position_ids=torch.cat([torch.arange(7), torch.arange(5)])[None],
        ).logits[0, 7:]
    return float((packed - alone).abs().max()) <= tolerance * max(1.0, float(alone.abs().max()))
