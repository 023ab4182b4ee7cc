"""`harness train` on encoder-decoder bases (tiny:t5-ko, tiny:bart-ko) with real 4-bit QLoRA on CPU:
the prompt is the source and the response the target, the loss falls, the adapter reloads with plain
peft on AutoModelForSeq2SeqLM to the record's probe logits, the collated labels are the target's own
tokens, a resumed run equals an uninterrupted one, and decoder-only settings are refused by name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from support import first_target_logits, one_torch_thread

from harness.config import TrainConfig
from harness.train.data import build_examples
from harness.train.recipe import train

PRESET = Path(__file__).resolve().parents[1] / "harness" / "data" / "presets" / "tiny-ko-dialogue.yaml"

pytestmark = pytest.mark.slow

RESUME_K = 3
# A short run: 6 training and 2 validation dialogues, two passes, a checkpoint every RESUME_K steps.
SHORT = {
    "data": {"limit": 8, "validation_fraction": 0.25, "max_source_length": 192, "max_target_length": 48},
    "training": {
        "max_steps": 2 * RESUME_K,
        "save_steps": RESUME_K,
        "eval_steps": RESUME_K,
        "logging_steps": 1,
        "batch_size": 2,
        "learning_rate": 0.02,
        "warmup": 0,
    },
}


def short_config(out: Path, base: str) -> TrainConfig:
    """The preset shortened, with lora.target_modules left at its default (the preset's all-linear dropped)."""
    raw = yaml.safe_load(PRESET.read_text(encoding="utf-8"))
    raw["lora"].pop("target_modules")
    for section, values in SHORT.items():
        raw[section].update(values)
    return TrainConfig.model_validate({**raw, "base": base, "output_dir": str(out)})


@pytest.fixture(scope="module")
def runs(tmp_path_factory, harness_cache):
    """`runs(base)`: (config, record) of the short run on that base, trained on first request."""
    done: dict[str, tuple] = {}

    def get(base: str):
        if base not in done:
            config = short_config(tmp_path_factory.mktemp(base.replace(":", "-")) / "adapter", base)
            with one_torch_thread():
                done[base] = config, train(config)
        return done[base]

    return get


@pytest.mark.parametrize(
    ("base", "attention"),
    [("tiny:t5-ko", {"q", "k", "v", "o"}), ("tiny:bart-ko", {"q_proj", "k_proj", "v_proj", "out_proj"})],
)
def test_trains_and_reloads_to_the_probe_logits(runs, base, attention):
    from safetensors.torch import load_file

    from harness.model.tiny import tiny_model_path

    config, record = runs(base)
    out = Path(config.output_dir)
    losses = [h["loss"] for h in record["history"] if "loss" in h]
    assert record["global_steps"] == 2 * RESUME_K and len(losses) == 2 * RESUME_K
    assert all(loss == loss and loss < 100 for loss in losses)  # finite
    assert losses[-1] < losses[0], losses
    assert [h["step"] for h in record["history"] if "eval_loss" in h] == [RESUME_K, 2 * RESUME_K]

    # The default targets became the family's attention projections, and the plan line says so.
    adapter_config = json.loads((out / "adapter_config.json").read_text())
    assert adapter_config["task_type"] == "SEQ_2_SEQ_LM"
    assert set(adapter_config["target_modules"]) == attention
    keys = load_file(str(out / "adapter_model.safetensors"))
    assert {k.split(".lora_A")[0].rsplit(".", 1)[-1] for k in keys if ".lora_A" in k} == attention
    assert set(record["config"]["lora"]["target_modules"]) == attention
    why = " ".join(record["plan"]["why"].values())
    assert "Seq2SeqTrainer" in why and "Liger off" in why and "default targets" in why, why
    assert record["plan"]["padding_free"] is False and record["plan"]["liger"] is False

    probe = record["probe"]
    base_logits, logits = first_target_logits(str(tiny_model_path(base)), out, probe["text"])
    values, indices = logits.topk(len(probe["top_token_ids"]))
    assert indices.tolist() == probe["top_token_ids"]
    assert max(abs(a - b) for a, b in zip(values.tolist(), probe["top_logits"])) <= 1e-4
    assert (base_logits[indices] - values).abs().max() > 0.1  # the adapter is what moved them


def test_tokens_seen_are_source_and_target_tokens(runs):
    """Two passes over the six training dialogues: twice their source and target tokens."""
    from transformers import AutoTokenizer

    config, record = runs("tiny:t5-ko")
    rows, _, _ = build_examples(config)
    tokenizer = AutoTokenizer.from_pretrained(record["base_model_path"])
    source = tokenizer([r["prompt"] for r in rows], truncation=True, max_length=192).input_ids
    target = tokenizer(text_target=[r["completion"] for r in rows], truncation=True, max_length=48).input_ids
    assert len(rows) == 6
    assert record["tokens_seen"] == 2 * (sum(map(len, source)) + sum(map(len, target)))


def cut(ids: list[int], limit: int, eos: int) -> list[int]:
    """A tokenized text cut at `limit` tokens, its closing </s> kept."""
    return ids if len(ids) <= limit else ids[: limit - 1] + [eos]


@pytest.mark.parametrize("base", ["tiny:t5-ko", "tiny:bart-ko"])
def test_collated_labels_are_the_target_tokens(base, tmp_path):
    """One batch as the trainer gets it: sources padded on the right with the pad token, labels the
    tokenizer's own target tokens, cut at max_target_length and padded with -100."""
    from transformers import AutoTokenizer

    from harness.model.tiny import tiny_model_path
    from harness.train.seq2seq_trainer import collator, tokenize

    config = short_config(tmp_path, base)
    rows, _, _ = build_examples(config)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path(base))
    batch = collator(tokenizer)(list(tokenize(rows[:3], tokenizer, config)))
    for n, row in enumerate(rows[:3]):
        source = cut(tokenizer(row["prompt"]).input_ids, 192, tokenizer.eos_token_id)
        target = cut(tokenizer(text_target=row["completion"]).input_ids, 48, tokenizer.eos_token_id)
        labels = batch["labels"][n].tolist()
        assert labels[: len(target)] == target and set(labels[len(target) :]) <= {-100}
        ids = batch["input_ids"][n].tolist()
        assert ids[: len(source)] == source and set(ids[len(source) :]) <= {tokenizer.pad_token_id}
        assert batch["attention_mask"][n].tolist() == [1] * len(source) + [0] * (len(ids) - len(source))


def test_resume_equals_uninterrupted_run(runs, tmp_path):
    import torch
    from safetensors.torch import load_file

    config_a, record_a = runs("tiny:t5-ko")
    out_a = Path(config_a.output_dir)
    out_b = tmp_path / "resumed"
    (out_b / "checkpoints").mkdir(parents=True)
    checkpoint = out_a / "checkpoints" / f"checkpoint-{RESUME_K}"
    shutil.copytree(checkpoint, out_b / "checkpoints" / checkpoint.name)
    with one_torch_thread():
        record_b = train(short_config(out_b, "tiny:t5-ko"), resume=True)

    a, b = (load_file(str(d / "adapter_model.safetensors")) for d in (out_a, out_b))
    assert a.keys() == b.keys() and a
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6, rtol=0), key
    hist_a = {h["step"]: h for h in record_a["history"]}
    hist_b = {h["step"]: h for h in record_b["history"]}
    for step in range(RESUME_K + 1, 2 * RESUME_K + 1):
        assert hist_b[step]["loss"] == pytest.approx(hist_a[step]["loss"], abs=1e-5), step
    assert hist_b[2 * RESUME_K]["eval_loss"] == pytest.approx(hist_a[2 * RESUME_K]["eval_loss"], abs=1e-5)
    assert record_b["tokens_seen"] == record_a["tokens_seen"]


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ("data.packing=true", "data.packing: true"),
        ("data.loss_on=all", "data.loss_on: all"),
        ("data.chat=true", "data.chat: true"),
        ("training.liger=true", "training.liger: true"),
        ("training.padding_free=true", "training.padding_free: true"),
        ("data.template=text", "data.template: 'text' has no response"),
    ],
)
def test_decoder_only_settings_are_refused_by_name(run_cli, setting, named):
    code, _out, err = run_cli(["train", PRESET, "--set", setting, "--set", "training.max_steps=1"])
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert named in err and "encoder-decoder" in err and "tiny:bart-ko" in err, err


@pytest.mark.parametrize(
    ("base", "sizes"),
    [
        ("tiny:t5-ko", ("d_model", "d_ff", "num_layers")),
        ("tiny:bart-ko", ("d_model", "encoder_ffn_dim", "encoder_layers")),
    ],
)
def test_memory_estimate_reads_the_family_sizes(base, sizes, tmp_path):
    """fit_to_memory (CUDA) gets the family's own size fields, and a row's source and target tokens."""
    from transformers import AutoConfig, AutoTokenizer

    from harness.model.tiny import tiny_model_path
    from harness.train.seq2seq import memory_shape

    config = short_config(tmp_path, base)
    rows, _, _ = build_examples(config)
    model_config = AutoConfig.from_pretrained(tiny_model_path(base))
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path(base))
    lengths, hidden, intermediate, layers = memory_shape(model_config, rows[:2], tokenizer, config)
    assert (hidden, intermediate, layers) == tuple(getattr(model_config, name) for name in sizes)
    row = rows[0]
    expected = len(tokenizer(row["prompt"], truncation=True, max_length=192).input_ids) + len(
        tokenizer(text_target=row["completion"], truncation=True, max_length=48).input_ids
    )
    assert lengths[0] == expected
