"""Memory over training steps and `training.batch_size: find`, on the tiny model with real 4-bit QLoRA on
CPU: the memory figures reach the record's history, TensorBoard (read back with tensorboard's own reader)
and the report's chart; the probe records what it tried, keeps the global batch, and leaves no trace on
training: its adapter equals one trained directly with the micro-batch it chose."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.commands.train import summary
from harness.config import TrainConfig, load_config
from harness.report.load import Model, Report
from harness.report.memory_chart import memory_charts
from harness.train.batch_probe import candidate_sizes, probe_reason
from harness.train.recipe import train

PRESET = Path(__file__).resolve().parents[1] / "harness" / "data" / "presets" / "tiny-ko-qa.yaml"

# Padded batches, so that the micro-batch the probe picks is the one the Trainer runs (padding-free runs
# merge the accumulation into one micro-step before the probe); LoRA dropout stays on, so the probe's steps
# draw from the random generators as training does.
SETTINGS = {"data.limit": 8, "data.validation_fraction": 0, "training.max_steps": 3, "training.logging_steps": 1}
SETTINGS |= {"training.save_steps": 1000, "training.padding_free": False, "training.learning_rate": 0.003}
ACCUMULATION = 2
AUTO_MICRO_BATCH_ON_CPU = 4  # harness.runtime.env.train_batch_size


def run(out: Path, **overrides) -> dict:
    config = load_config(TrainConfig, PRESET, {"output_dir": str(out), **SETTINGS, **overrides})
    return train(config)


@pytest.fixture(scope="module")
def probed(tmp_path_factory, harness_cache):
    out = tmp_path_factory.mktemp("find") / "adapter"
    return out, run(out, **{"training.batch_size": "find", "training.gradient_accumulation": ACCUMULATION})


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# These check the CPU's path (process memory, probing up to the global batch); on a GPU
# `benchmarks/gpu.py seq2seq` runs the probe to its out-of-memory bound and records GPU memory.
cpu_path = pytest.mark.skipif(_cuda(), reason="asserts the CPU's process-memory and batch-probe path")


def adapter_tensors(directory: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(directory / "adapter_model.safetensors"))


@pytest.mark.slow
@cpu_path
def test_find_records_its_probes_and_keeps_the_global_batch(probed):
    _out, record = probed
    plan = record["plan"]
    probe = plan["batch_probe"]
    assert [p["micro_batch"] for p in probe["probes"]] == [1, 2, 4, 8]
    assert all(p["fit"] and p["step_s"] > 0 and p["rss_bytes"] > 0 for p in probe["probes"])
    assert probe["chosen"] == plan["batch_size"] == 8 and plan["gradient_accumulation"] == 1
    global_batch = AUTO_MICRO_BATCH_ON_CPU * ACCUMULATION
    assert probe["global_batch"] == plan["batch_size"] * plan["gradient_accumulation"] == global_batch
    assert "micro-batch 8 found by probing 1,2,4,8 up to the global batch" in plan["why"]["micro_batch"]
    assert "found by probing" in summary(record, "out")


@pytest.mark.slow
def test_training_after_the_probe_equals_training_with_the_chosen_micro_batch(probed, tmp_path):
    out, record = probed
    direct = run(tmp_path / "direct", **{"training.batch_size": 8, "training.gradient_accumulation": 1})
    assert direct["plan"]["batch_probe"] is None
    after_probe, straight = adapter_tensors(out), adapter_tensors(tmp_path / "direct")
    assert after_probe.keys() == straight.keys() and after_probe
    for name, tensor in straight.items():
        assert after_probe[name].equal(tensor), name
    assert [h["loss"] for h in record["history"]] == [h["loss"] for h in direct["history"]]


@pytest.mark.slow
@cpu_path
def test_memory_at_every_logging_step_in_the_record_and_tensorboard(probed):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, record = probed
    assert record["memory"]["kind"] == "process" and "process_rss_mib" in record["memory"]["series"]
    history = [h for h in record["history"] if "loss" in h]
    assert [h["step"] for h in history] == [1, 2, 3]
    assert all(h["process_rss_mib"] > 0 for h in history)
    assert record["peak_memory_bytes"] >= max(h["process_rss_mib"] for h in history) * 2**20 * 0.99

    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    scalars = events.Scalars("train/process_rss_mib")
    assert [s.step for s in scalars] == [1, 2, 3]
    assert [s.value for s in scalars] == pytest.approx([h["process_rss_mib"] for h in history], rel=1e-6)


@pytest.mark.slow
@cpu_path
def test_memory_chart_and_summary_name_what_was_measured(probed):
    _out, record = probed
    model = Model(
        name="ko-qa", run_name="ko-qa", run_id="r", info={"train_record": record}, metrics={}, delta=None, records=[]
    )
    (chart,) = memory_charts(Report(runs=[], models=[model], metric_info={}, suite="s", task="qa"))
    (line,) = chart["lines"]
    assert line["key"] == "process_rss_mib" and "resident memory (RSS)" in line["legend"]
    assert chart["when"] == "at the log"
    assert chart["unit"] == "MiB" and len(line["dots"]) == 3
    assert "process resident (RSS)" in summary(record, "out")


def test_candidate_micro_batches_each_leave_a_whole_accumulation():
    assert candidate_sizes(1) == [1]
    assert candidate_sizes(16) == [1, 2, 4, 8, 16]
    assert candidate_sizes(12) == [1, 2, 4, 12]
    assert candidate_sizes(6) == [1, 2, 6]


def test_the_plan_line_names_the_sizes_tried_and_the_one_that_ran_out():
    probes = [{"micro_batch": size, "fit": size < 16} for size in (1, 2, 4, 8, 16)]
    assert probe_reason(probes, 8, cuda=True) == "micro-batch 8 found by probing 1,2,4,8,16(OOM)"
    # another process found less: every process takes the smallest
    assert probe_reason(probes, 4, cuda=True).endswith("16(OOM); 8 fit here but 4 on another process, so all take 4")
