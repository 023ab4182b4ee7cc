"""`harness train` end to end on the tiny model with real 4-bit QLoRA on CPU (transformers + peft
+ bitsandbytes + TRL): it learns, what it saves reloads to the same numbers, a resumed run equals
an uninterrupted one, and the train record holds what a user needs to trust the result."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from harness.config import TrainConfig, load_config
from harness.errors import HarnessError
from harness.train.data import build_examples
from harness.train.recipe import train
from harness.train.record import RECORD_FILE

PRESET = Path(__file__).resolve().parents[1] / "harness" / "data" / "presets" / "tiny-ko-qa.yaml"

pytestmark = pytest.mark.slow


def preset_config(output_dir: Path, **overrides) -> TrainConfig:
    return load_config(TrainConfig, PRESET, {"output_dir": str(output_dir), **overrides})


def load_adapter_tensors(directory: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(directory / "adapter_model.safetensors"))


# ---------------------------------------------------------------- shared runs (one each per module)

MEMORISE = {
    "data.limit": 4,
    "data.validation_fraction": 0,
    "training.max_steps": 60,
    "training.learning_rate": 0.003,
    "training.logging_steps": 1,
    "training.save_steps": 1000,
}


@pytest.fixture(scope="module")
def memorised(tmp_path_factory, harness_cache):
    """A run that memorises four examples; returns (config, record)."""
    out = tmp_path_factory.mktemp("memorise") / "adapter"
    config = preset_config(out, **MEMORISE)
    return config, train(config)


RESUME_K = 3
RESUMABLE = {
    "data.limit": 8,
    "data.validation_fraction": 0.25,
    "training.max_steps": 2 * RESUME_K,
    "training.save_steps": RESUME_K,
    "training.eval_steps": RESUME_K,
    "training.logging_steps": 1,
    "training.batch_size": 2,
}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, harness_cache):
    """Run A: 2k steps with a checkpoint every k steps and a validation split."""
    out = tmp_path_factory.mktemp("run-a") / "adapter"
    config = preset_config(out, **RESUMABLE)
    return config, train(config)


# ---------------------------------------------------------------- (a) it learns


def test_loss_falls_by_at_least_half_when_memorising(memorised):
    _config, record = memorised
    losses = [h["loss"] for h in record["history"] if "loss" in h]
    assert record["global_steps"] == 60
    assert len(losses) >= 30  # logging_steps=1: one entry per step
    first, last = losses[0], losses[-1]
    assert last <= first / 2, (first, last)
    # The late part of training is far below the start, not one lucky step.
    assert max(losses[-10:]) < first / 2


def test_memorised_answer_is_generated(memorised, tiny_ref):
    """Greedy decoding with the saved adapter reproduces a training answer."""
    import torch
    from peft import PeftModel

    from harness.model.loading import load_base
    from harness.runtime.env import detect

    config, record = memorised
    train_rows, _, _ = build_examples(config)
    row = train_rows[0]
    assert row["prompt"] == record["probe"]["text"]
    base = load_base(tiny_ref, config.quantization, detect())
    model = PeftModel.from_pretrained(base.model, config.output_dir).eval()
    ids = base.tokenizer(row["prompt"], return_tensors="pt", add_special_tokens=False).input_ids
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=48,
            do_sample=False,
            pad_token_id=base.tokenizer.pad_token_id,
        )
    answer = base.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
    assert answer.strip().startswith(row["completion"].strip()), (answer, row["completion"])


# ---------------------------------------------------------------- (b) the saved adapter reloads exactly


def test_saved_adapter_reproduces_probe_logits(memorised, tiny_ref):
    import torch
    from peft import PeftModel
    from transformers import AutoTokenizer

    from harness.model.loading import load_base
    from harness.runtime.env import detect

    config, record = memorised
    probe = record["probe"]
    out = Path(config.output_dir)
    assert (out / "adapter_model.safetensors").is_file() and (out / "adapter_config.json").is_file()
    adapter_config = json.loads((out / "adapter_config.json").read_text())
    assert adapter_config["r"] == 32 and adapter_config["peft_type"] == "LORA"

    # The tokenizer saved next to the adapter is the one the probe used.
    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = tokenizer(probe["text"], return_tensors="pt", add_special_tokens=False).input_ids[:, -256:]
    assert ids.shape[1] == probe["n_tokens"]

    base = load_base(tiny_ref, config.quantization, detect())
    with torch.no_grad():
        base_logits = base.model(input_ids=ids).logits[0, -1].float()
    model = PeftModel.from_pretrained(base.model, str(out)).eval()
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, -1].float()
    values, indices = logits.topk(len(probe["top_token_ids"]))
    assert indices.tolist() == probe["top_token_ids"]
    assert torch.allclose(values, torch.tensor(probe["top_logits"]), atol=1e-4, rtol=0), (values, probe["top_logits"])
    # ...and the adapter is what makes the difference: the bare base scores differently.
    assert (base_logits[indices] - values).abs().max() > 1.0


# ---------------------------------------------------------------- (c) resume equals an uninterrupted run


def test_resume_equals_uninterrupted_run(uninterrupted, tmp_path):
    import torch

    config_a, record_a = uninterrupted
    out_a = Path(config_a.output_dir)
    checkpoint = out_a / "checkpoints" / f"checkpoint-{RESUME_K}"
    assert checkpoint.is_dir(), sorted(p.name for p in (out_a / "checkpoints").iterdir())
    assert (out_a / "checkpoints" / f"checkpoint-{2 * RESUME_K}").is_dir()

    out_b = tmp_path / "run-b"
    (out_b / "checkpoints").mkdir(parents=True)
    shutil.copytree(checkpoint, out_b / "checkpoints" / checkpoint.name)
    config_b = preset_config(out_b, **RESUMABLE)

    # A directory holding only checkpoints is an unfinished run: plain train refuses.
    with pytest.raises(HarnessError, match="--resume"):
        train(config_b)

    record_b = train(config_b, resume=True)
    assert record_b["global_steps"] == record_a["global_steps"] == 2 * RESUME_K

    tensors_a, tensors_b = load_adapter_tensors(out_a), load_adapter_tensors(out_b)
    assert tensors_a.keys() == tensors_b.keys() and tensors_a
    for name in tensors_a:
        assert torch.allclose(tensors_a[name], tensors_b[name], atol=1e-6, rtol=0), name

    hist_a = {h["step"]: h for h in record_a["history"]}
    hist_b = {h["step"]: h for h in record_b["history"]}
    last = 2 * RESUME_K
    assert hist_b[last]["loss"] == pytest.approx(hist_a[last]["loss"], abs=1e-5)
    assert hist_b[last]["eval_loss"] == pytest.approx(hist_a[last]["eval_loss"], abs=1e-5)
    # Steps after the checkpoint were trained again in B and match A step by step.
    for step in range(RESUME_K + 1, last + 1):
        assert hist_b[step]["loss"] == pytest.approx(hist_a[step]["loss"], abs=1e-5), step
    assert record_b["probe"]["top_token_ids"] == record_a["probe"]["top_token_ids"]


# ---------------------------------------------------------------- (d) the train record


def test_train_record_contents(uninterrupted):
    config, record = uninterrupted
    out = Path(config.output_dir)
    on_disk = json.loads((out / RECORD_FILE).read_text(encoding="utf-8"))
    assert on_disk == json.loads(json.dumps(record, ensure_ascii=False))

    assert on_disk["base_model"] == "tiny:llama-ko"
    assert Path(on_disk["base_model_path"]).is_dir()
    assert on_disk["base_signature"]["architecture"] == "LlamaForCausalLM"
    assert on_disk["config"] == config.model_dump(mode="json")
    assert on_disk["config"]["training"]["max_steps"] == 2 * RESUME_K

    data = on_disk["data"]
    assert data["path"] == "builtin:korquad_sample"
    assert Path(data["file"]).is_file()
    assert data["sha256"] == hashlib.sha256(Path(data["file"]).read_bytes()).hexdigest()
    assert data["examples"] == 6 and data["validation_examples"] == 2

    env = on_disk["environment"]
    assert env["device"] == "cpu"
    for lib in ("torch", "transformers", "peft", "trl", "bitsandbytes"):
        assert env["versions"][lib] and env["versions"][lib] != "not installed", lib
    assert on_disk["plan"]["optimizer"] == "adamw_torch" and on_disk["plan"]["device"] == "cpu"

    history = on_disk["history"]
    assert [h["step"] for h in history] == list(range(1, 2 * RESUME_K + 1))
    assert all(isinstance(h["loss"], float) for h in history)
    eval_steps = [h["step"] for h in history if "eval_loss" in h]
    assert eval_steps == [RESUME_K, 2 * RESUME_K]
    assert on_disk["global_steps"] == 2 * RESUME_K

    assert on_disk["train_runtime_s"] > 0
    assert on_disk["tokens_seen"] > 0 and on_disk["tokens_per_second"] > 0
    assert on_disk["peak_memory_bytes"] > 10 * 2**20
    assert (out / "tensorboard").is_dir() and any((out / "tensorboard").rglob("events.out.tfevents.*"))
    assert (out / "adapter_model.safetensors").is_file()
    assert (out / "tokenizer.json").is_file()


def test_record_without_validation_has_no_eval_loss(memorised):
    _, record = memorised
    assert record["data"]["validation_examples"] == 0
    assert not any("eval_loss" in h for h in record["history"])


# ---------------------------------------------------------------- (e) protecting finished work


def test_existing_adapter_needs_overwrite(memorised, tmp_path):
    config, _record = memorised
    out = Path(config.output_dir)
    before = (out / "adapter_model.safetensors").read_bytes()
    with pytest.raises(HarnessError, match="--overwrite"):
        train(config)
    assert (out / "adapter_model.safetensors").read_bytes() == before

    # With overwrite the same place is replaced by the new run (a copy, to keep the fixture intact).
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    config2 = preset_config(copy, **{**MEMORISE, "training.max_steps": 2})
    record2 = train(config2, overwrite=True)
    assert record2["global_steps"] == 2
    assert json.loads((copy / RECORD_FILE).read_text())["global_steps"] == 2


def test_overwrite_keeps_the_previous_run_until_the_new_one_starts(uninterrupted, tmp_path):
    """A bad dataset found under --overwrite must not cost the previous run its checkpoints."""
    from harness.errors import DataError

    config, _ = uninterrupted
    copy = tmp_path / "copy"
    shutil.copytree(config.output_dir, copy)
    before = sorted(p.name for p in (copy / "checkpoints").iterdir())
    bad = preset_config(copy, **{**RESUMABLE, "data.path": str(tmp_path / "missing.jsonl")})
    with pytest.raises(DataError):
        train(bad, overwrite=True)
    assert sorted(p.name for p in (copy / "checkpoints").iterdir()) == before
    assert (copy / "tensorboard").is_dir() and (copy / "adapter_model.safetensors").is_file()


def test_weights_gone_non_finite_stop_training_and_keep_the_last_good_checkpoint(tmp_path):
    out = tmp_path / "diverged"
    config = preset_config(
        out,
        **{
            "data.limit": 8,
            "training.max_steps": 5,
            "training.save_steps": 1,
            "training.warmup": 0,
            "training.learning_rate": 1e30,
        },
    )
    with pytest.raises(HarnessError, match="NaN or infinite at step 2") as caught:
        train(config)
    assert "checkpoint-1" in str(caught.value) and "training.learning_rate" in str(caught.value)
    assert [p.name for p in (out / "checkpoints").iterdir() if p.name.startswith("checkpoint-")] == ["checkpoint-1"]
    weights = load_adapter_tensors(out / "checkpoints" / "checkpoint-1")
    assert all(bool(w.isfinite().all()) for w in weights.values())
    assert not (out / "adapter_model.safetensors").exists() and not (out / RECORD_FILE).exists()


def test_a_max_length_that_leaves_nothing_to_learn_is_a_config_error(tmp_path):
    from harness.errors import ConfigError

    config = preset_config(tmp_path / "short", **{"data.limit": 8, "data.max_length": 1, "training.max_steps": 2})
    with pytest.raises(ConfigError, match=r"data.max_length: 1 tokens leave no training example"):
        train(config)
    assert not (tmp_path / "short" / "tensorboard").exists()


def test_resume_without_checkpoint_is_an_error(tmp_path):
    config = preset_config(tmp_path / "never-trained", **MEMORISE)
    with pytest.raises(HarnessError, match="no checkpoint"):
        train(config, resume=True)
    (tmp_path / "never-trained" / "checkpoints").mkdir(parents=True)
    with pytest.raises(HarnessError, match="no checkpoint"):
        train(config, resume=True)


def test_cli_refuses_existing_adapter(memorised, run_cli):
    config, _ = memorised
    code, _out, err = run_cli(["train", PRESET, "--output-dir", config.output_dir, "--set", "training.max_steps=1"])
    assert code == 2
    assert err.strip().splitlines() == [err.strip()]
    assert "already holds an adapter" in err and "--overwrite" in err


def test_two_processes_train_the_same_adapter(run_subprocess, tmp_path, harness_cache):
    """Same config and seed, two fresh processes at the default thread count: byte-identical
    adapters (LoRA's initialisation is seeded; it once was not)."""
    digests = []
    for run in ("a", "b"):
        out = tmp_path / run
        proc = run_subprocess(
            [
                "train",
                "--output-dir",
                out,
                "--set",
                "training.max_steps=6",
                "--set",
                "data.limit=12",
                "--set",
                "data.validation_fraction=0",
            ],
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        digests.append(hashlib.sha256((out / "adapter_model.safetensors").read_bytes()).hexdigest())
    assert digests[0] == digests[1]
