"""The plain references the encoder-decoder tests check harness against (transformers, peft and
bitsandbytes alone: the 4-bit base + PeftModel of `zoo_helpers.load_reference`), and a real LoRA
adapter made with peft for a T5 or BART of any size."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "zoo"))

from zoo_helpers import (
    NEW_TOKENS,  # noqa: F401 - the tests import it from here
    load_reference,
    seq2seq_adapter,
)
from zoo_helpers import greedy as zoo_greedy

# LoRA targets of the T5 family (T5, mT5: q/k/v/o) and of the BART family (BART, mBART: the
# attention projections and the feed-forward), as their fine-tuning recipes name them.
TARGETS = {"t5": ["q", "k", "v", "o"], "bart": ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]}


def family(ref: str) -> str:
    return "t5" if "t5" in ref else "bart"


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
    """`get(ref)`: (a LoRA adapter made by peft alone on `ref`, at random so it moves the logits, the
    4-bit base + PeftModel reference, its tokenizer), each made on first request: the
    `seq2seq_setup` fixture."""
    from harness.model.tiny import tiny_model_path

    made = {}

    def get(ref: str):
        if ref not in made:
            path = str(tiny_model_path(ref))
            out = tmp_path_factory.mktemp(ref.replace(":", "-")) / "s2s"
            adapter = seq2seq_adapter(path, out, TARGETS[family(ref)])
            # Scaled up so that it changes the tiny models' greedy answers, not only their logits.
            config_file = adapter / "adapter_config.json"
            config = json.loads(config_file.read_text(encoding="utf-8"))
            config_file.write_text(json.dumps({**config, "lora_alpha": 8 * config["r"]}), encoding="utf-8")
            made[ref] = (adapter, *load_reference(path, adapter))
        return made[ref]

    return get
