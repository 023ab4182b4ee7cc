"""`training.batch_size: find` under two gloo processes (`harness train --num-processes 2`, through the
real launcher): every rank probes, they agree on one micro-batch, and the global batch is kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_two_processes_agree_on_the_probed_micro_batch_and_keep_the_global_batch(tmp_path, tiny_path):
    # tiny_path: the tiny model is built here first, not by the two ranks at once
    settings = {
        "data.limit": 8,
        "data.validation_fraction": 0,
        "training.max_steps": 2,
        "training.logging_steps": 1,
        "training.save_steps": 1000,
        "training.padding_free": "false",
        "training.batch_size": "find",
        "training.gradient_accumulation": 2,
    }
    sets = [arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")]
    cmd = [sys.executable, "-m", "harness", "train", *sets, "--output-dir", "out", "--num-processes", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONIOENCODING": "utf-8"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    record = json.loads((tmp_path / "out" / "train_record.json").read_text(encoding="utf-8"))
    plan = record["plan"]
    # auto's micro-batch on CPU (4) × accumulation 2, shared by the two processes: 4 examples each per step
    assert record["world_size"] == 2 and plan["batch_size"] * plan["gradient_accumulation"] * 2 == 8
    assert [p["micro_batch"] for p in plan["batch_probe"]["probes"]] == [1, 2, 4]
    assert plan["batch_size"] == plan["batch_probe"]["chosen"] == 4
    assert all("process_rss_mib" in h for h in record["history"] if "loss" in h)
