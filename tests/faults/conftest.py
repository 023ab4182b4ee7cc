"""The fault suite: every command fed the wrong thing, and faults injected while it works.

Each case asserts the promise of DESIGN.md: bad input or a broken environment gives exit code 2 and
one line on stderr naming the file or field and the fix, no traceback; valid input, however odd,
succeeds; finished work stays on disk and a re-run resumes from it.

Shared, built once per session: one adapter trained for two steps and one finished eval run of
four samples (base + adapter). Cases that change a run work on a copy.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "eval"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_helpers import PRESET, SUITES, one_torch_thread
from fault_helpers import ADAPTER, EVAL_ARGS, RUN_ID


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="session")
def fault_adapter(tmp_path_factory, harness_cache) -> Path:
    """A real LoRA adapter on tiny:llama-ko, two steps of training."""
    from harness.config import TrainConfig, load_config
    from harness.train.recipe import train

    out = tmp_path_factory.mktemp("fault-adapter") / ADAPTER
    config = load_config(
        TrainConfig,
        PRESET,
        {"output_dir": str(out), "data.limit": 4, "training.max_steps": 2, "data.validation_fraction": 0},
    )
    with one_torch_thread():
        train(config, overwrite=True)
    assert (out / "adapter_model.safetensors").is_file()
    return out


@pytest.fixture(scope="session")
def fault_run(tmp_path_factory, fault_adapter) -> Path:
    """A finished korquad_sample run, base + adapter, four samples (read-only: use `run_copy`)."""
    from harness.commands.cli import main

    root = tmp_path_factory.mktemp("fault-runs")
    with one_torch_thread():
        code = main(
            [
                "eval",
                str(SUITES / "korquad_sample.yaml"),
                "--adapter",
                f"{ADAPTER}={fault_adapter}",
                "--out",
                str(root),
                "--run-id",
                RUN_ID,
                *EVAL_ARGS,
            ]
        )
    assert code == 0
    return root / RUN_ID


@pytest.fixture
def run_copy(fault_run, tmp_path) -> Path:
    target = tmp_path / "runs" / RUN_ID
    shutil.copytree(fault_run, target)
    return target


@pytest.fixture(scope="session")
def nan_adapter(tmp_path_factory, fault_adapter) -> Path:
    """The session's adapter with every weight NaN: a broken adapter as training on bad data leaves one."""
    from safetensors.torch import load_file, save_file

    out = tmp_path_factory.mktemp("nan-adapter") / "broken"
    shutil.copytree(fault_adapter, out)
    weights = out / "adapter_model.safetensors"
    tensors = load_file(weights)
    save_file({name: t.float().fill_(float("nan")).to(t.dtype) for name, t in tensors.items()}, weights)
    return out


@pytest.fixture(scope="session")
def truncated_adapter(tmp_path_factory, fault_adapter) -> Path:
    """The session's adapter with its weights file cut short, as an interrupted copy leaves it."""
    out = tmp_path_factory.mktemp("truncated-adapter") / "cut"
    shutil.copytree(fault_adapter, out)
    weights = out / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    return out
