"""`harness train` on every decoder family of the zoo: on the family's usual target modules and on
all-linear (GPT-2's Conv1D included) the saved adapter, reloaded by peft onto the 4-bit base,
gives the logits training ended with; padding-free batches are used exactly where packing gives a
sequence its own logits; `--resume` passes over a checkpoint half-written by a kill. Every
encoder-decoder family trains with Seq2SeqTrainer and reloads the same way."""

from __future__ import annotations

import logging
import shutil

import pytest
from conftest import train_config
from zoo_helpers import (
    DECODERS,
    ENCODER_DECODERS,
    LOGIT_TOLERANCE,
    USUAL_TARGETS,
    last_logits,
    load_reference,
    one_torch_thread,
    packs_exactly,
)

pytestmark = pytest.mark.slow

# Where packed sequences see each other (their attention ignores per-sequence position ids).
PACKING_LEAKS = {"opt", "bloom"}


def _lora_modules(adapter) -> set[str]:
    from safetensors.torch import load_file

    keys = load_file(str(adapter / "adapter_model.safetensors"))
    return {k.split(".lora_A")[0].rsplit(".", 1)[-1] for k in keys if ".lora_A" in k}


def _check_probe(family: str, adapter, record: dict) -> None:
    """The record's probe (the trained model's logits on a training prompt) from a plain reload."""
    from harness.model.tiny import tiny_model_path

    probe = record["probe"]
    model, tokenizer = load_reference(str(tiny_model_path(f"tiny:{family}")), adapter)
    with one_torch_thread():
        logits = last_logits(model, tokenizer, probe["text"])
    values, ids = logits.topk(len(probe["top_token_ids"]))
    assert ids.tolist() == probe["top_token_ids"]
    assert max(abs(a - b) for a, b in zip(values.tolist(), probe["top_logits"])) <= LOGIT_TOLERANCE


@pytest.mark.parametrize("family", DECODERS)
def test_usual_targets_train_and_reload(family, zoo_adapter):
    adapter, record = zoo_adapter(family)
    assert record["global_steps"] == 4
    assert _lora_modules(adapter) == set(USUAL_TARGETS[family])
    _check_probe(family, adapter, record)


@pytest.mark.parametrize("family", DECODERS)
def test_all_linear_targets_every_linear_layer(family, zoo_adapter):
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.pytorch_utils import Conv1D

    from harness.model.tiny import tiny_model_path

    adapter, record = zoo_adapter(family, "all-linear")
    plain = AutoModelForCausalLM.from_pretrained(tiny_model_path(f"tiny:{family}"))
    head = plain.get_output_embeddings()
    linear = {
        name.rsplit(".", 1)[-1]
        for name, m in plain.named_modules()
        if isinstance(m, (torch.nn.Linear, Conv1D)) and m is not head
    }
    assert _lora_modules(adapter) == linear
    _check_probe(family, adapter, record)


@pytest.mark.parametrize("family", DECODERS)
def test_padding_free_only_where_packing_is_exact(family, zoo_adapter, run_cli):
    from harness.model.tiny import tiny_model_path

    _adapter, record = zoo_adapter(family)
    model, _tokenizer = load_reference(str(tiny_model_path(f"tiny:{family}")))
    with one_torch_thread():
        exact = packs_exactly(model)
    assert exact == (family not in PACKING_LEAKS)
    assert record["plan"]["padding_free"] == exact, record["plan"]["why"]
    if not exact:
        code, _out, err = run_cli(
            [
                "train",
                "--base",
                f"tiny:{family}",
                "--set",
                "training.padding_free=true",
                "--set",
                "training.max_steps=1",
                "--set",
                "data.limit=4",
            ]
        )
        assert code == 2, err
        assert "training.padding_free: true is not exact" in err and "attend to each other" in err, err


@pytest.mark.parametrize("family", DECODERS)
def test_resume_passes_over_a_half_written_checkpoint(family, zoo_adapter, tmp_path, caplog):
    """A run killed while saving checkpoint-4 resumes from checkpoint-2 and ends where the
    uninterrupted run ended."""
    from safetensors.torch import load_file

    from harness.train.recipe import train

    whole, _record = zoo_adapter(family)
    out = tmp_path / "resumed"
    (out / "checkpoints").mkdir(parents=True)
    shutil.copytree(whole / "checkpoints" / "checkpoint-2", out / "checkpoints" / "checkpoint-2")
    half = out / "checkpoints" / "checkpoint-4"
    shutil.copytree(whole / "checkpoints" / "checkpoint-4", half)
    (half / "trainer_state.json").unlink()  # the Trainer writes it last
    with one_torch_thread(), caplog.at_level(logging.INFO, logger="harness.train"):
        train(train_config(family, out, USUAL_TARGETS[family]), resume=True)
    lines = [record.getMessage() for record in caplog.records]
    skipped = [line for line in lines if "skipping" in line]
    assert len(skipped) == 1 and "checkpoint-4" in skipped[0] and "incomplete" in skipped[0], lines
    expected, got = (load_file(str(d / "adapter_model.safetensors")) for d in (whole, out))
    assert expected.keys() == got.keys()
    for key in expected:
        assert (expected[key] - got[key]).abs().max() <= 1e-5, key


# The attention projections an encoder-decoder's LoRA usually targets (mT5 and mBART name them as T5 and BART).
ATTENTION = {"t5": ["q", "k", "v", "o"], "bart": ["q_proj", "k_proj", "v_proj", "out_proj"]}


@pytest.mark.parametrize("targets", ["attention", "all-linear"])
@pytest.mark.parametrize("family", ENCODER_DECODERS)
def test_encoder_decoder_trains_and_reloads(family, targets, tmp_path):
    """Seq2SeqTrainer on the family's attention projections and on all-linear: the adapter is a
    SEQ_2_SEQ_LM one on the expected layers, and peft reloads it to the record's probe logits."""
    import json

    import torch
    from support import first_target_logits
    from transformers import AutoModelForSeq2SeqLM

    from harness.model.tiny import tiny_model_path
    from harness.train.recipe import train

    path = tiny_model_path(f"tiny:{family}")
    attention = ATTENTION[family.removeprefix("m")]
    out = tmp_path / "adapter"
    record = train(train_config(family, out, attention if targets == "attention" else "all-linear"))
    assert record["global_steps"] == 4 and "Seq2SeqTrainer" in " ".join(record["plan"]["why"].values())
    assert json.loads((out / "adapter_config.json").read_text())["task_type"] == "SEQ_2_SEQ_LM"
    if targets == "attention":
        assert _lora_modules(out) == set(attention)
    else:
        plain = AutoModelForSeq2SeqLM.from_pretrained(path)
        head = plain.get_output_embeddings()
        linear = {
            n.rsplit(".", 1)[-1] for n, m in plain.named_modules() if isinstance(m, torch.nn.Linear) and m is not head
        }
        assert _lora_modules(out) == linear
    probe = record["probe"]
    _base, logits = first_target_logits(str(path), out, probe["text"])
    values, ids = logits.topk(len(probe["top_token_ids"]))
    assert ids.tolist() == probe["top_token_ids"]
    assert max(abs(a - b) for a, b in zip(values.tolist(), probe["top_logits"])) <= LOGIT_TOLERANCE
