"""The plain references the encoder-decoder tests check harness against (transformers, peft and
bitsandbytes alone), and a real LoRA adapter made with peft for a tiny T5 or BART."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "zoo"))

from zoo_helpers import NEW_TOKENS  # noqa: F401 - the tests import it from here
from zoo_helpers import greedy as zoo_greedy

# Each family's usual LoRA targets (T5: q/k/v/o; BART: its projections and feed-forward).
TARGETS = {"t5": ["q", "k", "v", "o"], "bart": ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]}


def family(ref: str) -> str:
    return "t5" if "t5" in ref else "bart"


def _quantized(path: str):
    import torch
    from transformers import AutoModelForSeq2SeqLM, BitsAndBytesConfig

    model = AutoModelForSeq2SeqLM.from_pretrained(
        path,
        dtype=torch.float32,
        quantization_config=BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.float32,
        ),
    )
    # bitsandbytes would repack for its bf16 CPU kernel on the first eval forward: keep float32 exact.
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
    return model


def make_adapter(path: str, targets: list[str], out: Path) -> Path:
    """A peft LoRA adapter on the 4-bit base with random (not zero) B matrices, so it moves the logits."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    config = LoraConfig(task_type="SEQ_2_SEQ_LM", r=8, lora_alpha=32, target_modules=targets, init_lora_weights=False)
    get_peft_model(_quantized(path), config).save_pretrained(str(out))
    return out


def load_reference(path: str, adapter: Path | None = None):
    """(model, tokenizer): the 4-bit base, with peft's PeftModel on top where an adapter is given."""
    from transformers import AutoTokenizer

    model = _quantized(path)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
    return model.eval(), AutoTokenizer.from_pretrained(path)


def greedy(model, tokenizer, text: str, repetition_penalty: float = 1.0) -> list[int]:
    """`generate` on the single un-padded prompt (`zoo_helpers.greedy`, NEW_TOKENS of them): the
    decoder's tokens after its start token, up to (not including) the first end token."""
    return zoo_greedy(model, tokenizer, tokenizer(text).input_ids, repetition_penalty)


def target_logprob(model, tokenizer, source: str, target: str) -> tuple[float, bool, int]:
    """(summed log-probability of `target`'s tokens given `source`, whether each is the most likely,
    tokens): one forward with `labels`, as the model is trained."""
    import torch

    ids = tokenizer(source, return_tensors="pt").input_ids
    labels = tokenizer(target, return_tensors="pt").input_ids
    with torch.inference_mode():
        logits = model(input_ids=ids, labels=labels).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1).gather(1, labels[0][:, None])[:, 0]
    return float(logprobs.double().sum()), bool((logits.argmax(-1) == labels[0]).all()), labels.shape[1]


def setups(tmp_path_factory):
    """`get(ref)`: (a peft LoRA adapter made on the 4-bit base of `ref`, the 4-bit base + PeftModel
    reference, its tokenizer), each made on first request: the `seq2seq_setup` fixture."""
    from harness.model.tiny import tiny_model_path

    made = {}

    def get(ref: str):
        if ref not in made:
            path = str(tiny_model_path(ref))
            out = tmp_path_factory.mktemp(ref.replace(":", "-")) / "s2s"
            adapter = make_adapter(path, TARGETS[family(ref)], out)
            made[ref] = (adapter, *load_reference(path, adapter))
        return made[ref]

    return get
