"""Fixtures of the zoo's conformance tests: one trained adapter per family and target choice, and
one plain reference per family (4-bit base + PeftModel, transformers alone), both shared by the
whole session so every command's test reuses them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from zoo_helpers import ADAPTER, PROMPTS, USUAL_TARGETS, answer, load_reference, one_torch_thread

PRESET = Path(__file__).resolve().parents[2] / "harness" / "data" / "presets" / "tiny-ko-qa.yaml"

# A few steps at a high learning rate, seconds on a CPU: enough for the adapter to move every family's
# logits by more than a unit, so a merge or reload that dropped it could not pass the logit checks.
TRAINING = {
    "data.limit": 8,
    "data.validation_fraction": 0,
    "training.max_steps": 4,
    "training.save_steps": 2,
    "training.batch_size": 4,
    "training.learning_rate": 0.05,
    "training.logging_steps": 1,
    "training.warmup": 0,
    "lora.r": 8,
    "lora.alpha": 16,
}


def train_config(family: str, out: Path, targets, **overrides):
    from harness.config import TrainConfig, load_config

    return load_config(
        TrainConfig,
        PRESET,
        {"output_dir": str(out), "base": f"tiny:{family}", "lora.target_modules": targets, **TRAINING, **overrides},
    )


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="session")
def zoo_adapter(tmp_path_factory, harness_cache):
    """`zoo_adapter(family, kind)`: (adapter directory, train record) of a run on the family's usual
    targets (kind "usual") or on all-linear, trained on first request."""
    from harness.train.recipe import train

    trained: dict[tuple[str, str], tuple[Path, dict]] = {}

    def get(family: str, kind: str = "usual") -> tuple[Path, dict]:
        if (family, kind) not in trained:
            out = tmp_path_factory.mktemp(f"{family}-{kind}") / ADAPTER
            targets = USUAL_TARGETS[family] if kind == "usual" else "all-linear"
            with one_torch_thread():
                record = train(train_config(family, out, targets))
            trained[family, kind] = out, record
        return trained[family, kind]

    return get


class Reference:
    """Batch-1 greedy answers of the 4-bit base and of base + adapter (PeftModel), memoised."""

    def __init__(self, family: str, adapter_dir: Path):
        from harness.model.tiny import tiny_model_path

        self.path = str(tiny_model_path(f"tiny:{family}"))
        self.model, self.tokenizer = load_reference(self.path, adapter_dir)
        self.answers: dict[tuple, dict] = {}

    def answer(self, text: str, *, adapter: bool, chat: bool = False, repetition_penalty: float = 1.0) -> dict:
        key = (text, adapter, chat, repetition_penalty)
        if key not in self.answers:
            with one_torch_thread():
                if adapter:
                    self.answers[key] = answer(self.model, self.tokenizer, text, chat, repetition_penalty)
                else:
                    with self.model.disable_adapter():
                        self.answers[key] = answer(self.model, self.tokenizer, text, chat, repetition_penalty)
        return self.answers[key]


@pytest.fixture(scope="session")
def reference(zoo_adapter):
    """`reference(family)`: the family's Reference over its usual-targets adapter."""
    built: dict[str, Reference] = {}

    def get(family: str) -> Reference:
        if family not in built:
            built[family] = Reference(family, zoo_adapter(family)[0])
        return built[family]

    return get


@pytest.fixture(scope="session")
def prompts_file(tmp_path_factory) -> Path:
    import json

    path = tmp_path_factory.mktemp("zoo-prompts") / "prompts.jsonl"
    path.write_text(
        "".join(json.dumps({"id": f"p{n}", "prompt": p}, ensure_ascii=False) + "\n" for n, p in enumerate(PROMPTS)),
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="session")
def seq2seq_setup(tmp_path_factory, harness_cache):
    """`seq2seq_setup("tiny:t5-ko")`: adapter, reference and tokenizer (`seq2seq_reference.setups`)."""
    from seq2seq_reference import setups

    return setups(tmp_path_factory)
