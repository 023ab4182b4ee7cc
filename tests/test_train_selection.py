"""`training.early_stopping`, `training.keep: best` and `training.report_to` on the tiny models with real
4-bit QLoRA on CPU: training stops once the eval loss has not improved for `patience` evaluations, the
saved adapter is the best checkpoint's weights (read back from the checkpoint's own safetensors) on the
decoder-only (SFTTrainer) and encoder-decoder (Seq2SeqTrainer) paths, and settings that cannot work are
refused by name before anything loads."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from support import one_torch_thread

from harness.config import TrainConfig, load_config
from harness.errors import ConfigError
from harness.train.recipe import train

PRESETS = Path(__file__).resolve().parents[1] / "harness" / "data" / "presets"

pytestmark = pytest.mark.slow

PATIENCE = 2
# Twelve examples (three held out), an evaluation and a checkpoint every two steps, a learning rate high
# enough that the eval loss soon stops improving.
STOPPING = {
    "data.limit": 12,
    "data.validation_fraction": 0.25,
    "training.max_steps": 40,
    "training.eval_steps": 2,
    "training.save_steps": 2,
    "training.logging_steps": 1,
    "training.batch_size": 2,
    "training.learning_rate": 0.01,
    "training.early_stopping": {"patience": PATIENCE},
    "training.keep": "best",
    "training.report_to": [],
}


def tensors(directory: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(directory / "adapter_model.safetensors"))


def assert_same_tensors(a: dict, b: dict) -> None:
    import torch

    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def eval_losses(record: dict) -> dict[int, float]:
    return {h["step"]: h["eval_loss"] for h in record["history"] if "eval_loss" in h}


@pytest.fixture(scope="module")
def stopped(tmp_path_factory, harness_cache):
    out = tmp_path_factory.mktemp("stopped") / "adapter"
    with one_torch_thread():
        return out, train(load_config(TrainConfig, PRESETS / "tiny-ko-qa.yaml", {"output_dir": str(out), **STOPPING}))


def test_training_stops_after_patience_evaluations_without_a_better_eval_loss(stopped):
    _out, record = stopped
    stop = record["stopped_early"]
    assert stop is not None and "training.early_stopping" in stop["reason"]
    assert stop["step"] == record["global_steps"] < STOPPING["training.max_steps"]
    assert record["history"][-1]["step"] == stop["step"]  # the history ends where training stopped
    losses = eval_losses(record)
    best = min(losses, key=losses.get)
    after = [s for s in losses if s > best]
    assert len(after) == PATIENCE and all(losses[s] >= losses[best] for s in after)


def test_keep_best_saves_the_best_checkpoints_adapter(stopped):
    out, record = stopped
    losses = eval_losses(record)
    best = min(losses, key=losses.get)
    kept = record["kept"]
    assert (kept["which"], kept["step"], kept["eval_loss"]) == ("best", best, losses[best])
    assert kept["checkpoint"] == f"checkpoints/checkpoint-{best}"
    saved = tensors(out)
    assert_same_tensors(saved, tensors(out / kept["checkpoint"]))
    last = out / "checkpoints" / f"checkpoint-{record['global_steps']}"
    assert not all(v.equal(tensors(last)[k]) for k, v in saved.items())  # the best is not the last


def test_report_to_empty_writes_no_tensorboard_and_tensorboard_is_the_default(stopped):
    out, _record = stopped
    assert not (out / "tensorboard").exists()
    assert TrainConfig().training.report_to == ["tensorboard"]


def test_keep_last_after_an_early_stop_keeps_the_weights_it_stopped_with(tmp_path, harness_cache):
    out = tmp_path / "adapter"
    overrides = {**STOPPING, "output_dir": str(out), "training.keep": "last"}
    overrides["training.early_stopping"] = {"patience": 1, "threshold": 100}  # stops at the second evaluation
    with one_torch_thread():
        record = train(load_config(TrainConfig, PRESETS / "tiny-ko-qa.yaml", overrides))
    assert record["stopped_early"]["step"] == 4 == record["global_steps"]
    assert record["kept"] == {"which": "last", "step": 4, "eval_loss": eval_losses(record)[4]}
    assert_same_tensors(tensors(out), tensors(out / "checkpoints" / "checkpoint-4"))


def test_keep_best_on_an_encoder_decoder(tmp_path, harness_cache):
    out = tmp_path / "adapter"
    overrides = {
        "output_dir": str(out),
        "data.limit": 8,
        "data.validation_fraction": 0.25,
        "data.max_source_length": 128,
        "data.max_target_length": 32,
        "training.max_steps": 12,
        "training.eval_steps": 2,
        "training.save_steps": 2,
        "training.batch_size": 2,
        "training.learning_rate": 0.02,
        # a threshold no improvement reaches: training stops at the second evaluation
        "training.early_stopping": {"patience": 1, "threshold": 100},
        "training.keep": "best",
    }
    with one_torch_thread():
        record = train(load_config(TrainConfig, PRESETS / "tiny-ko-dialogue.yaml", overrides))
    assert record["stopped_early"]["step"] == 4 == record["global_steps"]
    losses = eval_losses(record)
    assert set(losses) == {2, 4}
    assert record["kept"]["step"] == min(losses, key=losses.get)
    assert_same_tensors(tensors(out), tensors(out / record["kept"]["checkpoint"]))
    assert (out / "tensorboard").is_dir()


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"training.early_stopping": {"patience": 2}, "data.validation_fraction": 0}, "training.early_stopping"),
        ({"training.keep": "best", "data.validation_fraction": 0}, "training.keep: best"),
        ({"training.keep": "best", "training.eval_steps": 5, "training.save_steps": 10}, "training.save_steps: 10"),
        ({"training.keep": "best"}, "training.save_steps: 100"),  # the preset's, with evaluation per epoch
        ({"training.early_stopping": {"patience": 1}, "data.limit": 1}, "held out no example"),
    ],
)
def test_settings_without_eval_loss_to_choose_by_are_refused_by_name(overrides, named, tmp_path):
    config = load_config(TrainConfig, PRESETS / "tiny-ko-qa.yaml", {"output_dir": str(tmp_path / "a"), **overrides})
    with pytest.raises(ConfigError, match=named):
        train(config)


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed here")
def test_wandb_not_installed_is_refused_by_name(workdir, run_cli):
    code, _out, err = run_cli(["train", "--set", "training.report_to=[tensorboard, wandb]"])
    assert code == 2
    assert "training.report_to: wandb is not installed; pip install wandb" in err
    assert len(err.strip().splitlines()) == 1


def test_a_sweep_point_that_cannot_choose_is_refused_before_any_trains(workdir, run_cli):
    code, _out, err = run_cli(
        ["train", "--set", "training.early_stopping={patience: 1}", "--sweep", "data.validation_fraction=0.1,0"]
        + ["--output-dir", "sw"]
    )
    assert code == 2 and "point validation_fraction=0:" in err and "training.early_stopping" in err
    assert not any(Path("sw").rglob("adapter_model.safetensors"))
