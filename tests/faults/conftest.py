"""The fault suite: every command fed the wrong thing, and faults injected while it works.

Each case asserts the promise of DESIGN.md: bad input or a broken environment gives exit code 2 and
one line on stderr naming the file or field and the fix, no traceback; valid input, however odd,
succeeds; finished work stays on disk and a re-run resumes from it.

Shared, built once per session: one adapter trained for two steps and one finished eval run of
four samples (base + adapter). Cases that change a run work on a copy.
"""
from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "eval"))

from eval_helpers import PRESET, SUITES, one_torch_thread, quiet  # noqa: E402

TQDM_LINE = re.compile(r"^[^|]*:\s*\d+%\|.*\|")
ADAPTER = "ad"
RUN_ID = "faults"
# Small but real: four KorQuAD samples, four new tokens.
EVAL_ARGS = ["--limit", "4", "--set", "generation.max_new_tokens=4", "--set", "bootstrap.resamples=50"]


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="session")
def fault_adapter(tmp_path_factory, harness_cache) -> Path:
    """A real LoRA adapter on tiny:llama-ko, two steps of training."""
    from harness.config import TrainConfig, load_config
    from harness.train import train

    out = tmp_path_factory.mktemp("fault-adapter") / ADAPTER
    config = load_config(TrainConfig, PRESET, {"output_dir": str(out), "data.limit": 4, "training.max_steps": 2,
                                               "data.validation_fraction": 0})
    with one_torch_thread():
        train(config, overwrite=True, log=quiet)
    assert (out / "adapter_model.safetensors").is_file()
    return out


@pytest.fixture(scope="session")
def fault_run(tmp_path_factory, fault_adapter) -> Path:
    """A finished korquad_sample run, base + adapter, four samples (read-only: use `run_copy`)."""
    from harness.cli import main

    root = tmp_path_factory.mktemp("fault-runs")
    with one_torch_thread():
        code = main(["eval", str(SUITES / "korquad_sample.yaml"), "--adapter", f"{ADAPTER}={fault_adapter}",
                     "--out", str(root), "--run-id", RUN_ID, *EVAL_ARGS])
    assert code == 0
    return root / RUN_ID


@pytest.fixture
def run_copy(fault_run, tmp_path) -> Path:
    target = tmp_path / "runs" / RUN_ID
    shutil.copytree(fault_run, target)
    return target


def message_lines(stderr: str) -> list[str]:
    """stderr without progress bars (tqdm on stderr is not a message)."""
    lines = []
    for raw in stderr.splitlines():
        shown = raw.split("\r")[-1].strip()
        if shown and not TQDM_LINE.match(shown):
            lines.append(shown)
    return lines


def assert_one_line_error(code, err: str, command: str, needles=()) -> str:
    """Exit 2, one line `harness COMMAND: error: ...` holding every needle, no traceback."""
    lines = message_lines(err)
    assert "Traceback" not in err, err
    assert code == 2, f"exit {code}; stderr:\n{err}"
    assert len(lines) == 1, "expected one line on stderr, got:\n" + "\n".join(lines)
    assert lines[0].startswith(f"harness {command}: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def assert_ok(code, err: str) -> None:
    assert "Traceback" not in err, err
    assert code == 0, f"exit {code}; stderr:\n{err}"


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_bytes().decode("utf-8").split("\n") if line.strip()]
