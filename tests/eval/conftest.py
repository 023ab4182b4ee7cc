"""Fixtures for the `harness eval` tests: one tiny adapter trained per session (real 4-bit QLoRA
on CPU), suite loading with overrides, a quiet in-process eval runner and one shared QA run
(base + adapter) that read-only tests reuse.

Tests that change a run directory copy it first (`copy_run`); the shared run stays pristine.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_helpers import ADAPTER_NAME, SUITES, one_torch_thread, qa_overrides, quiet, train_adapter


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="session")
def eval_adapter(tmp_path_factory, harness_cache) -> Path:
    """A real LoRA adapter on tiny:llama-ko (trained once per session, 30 steps: ~10-20 s)."""
    out = tmp_path_factory.mktemp("eval-adapter") / ADAPTER_NAME
    record = train_adapter(out)
    assert (out / "adapter_model.safetensors").is_file(), record
    return out


@pytest.fixture(scope="session")
def suite_config():
    """`suite_config("korquad_sample.yaml", **{"dataset.limit": 4})` → a validated SuiteConfig."""
    from harness.config import SuiteConfig, load_config

    def load(name: str | Path, overrides: dict | None = None, adapters: dict | None = None):
        path = Path(name) if Path(name).is_absolute() else SUITES / name
        suite = load_config(SuiteConfig, path, overrides or {})
        if adapters:
            suite.models.adapters = {k: str(v) for k, v in adapters.items()}
        return suite, str(path)

    return load


@pytest.fixture(scope="session")
def eval_run(harness_cache):
    """Run `harness.evaluate.run.run_eval` in-process, quietly; returns the EvalResult."""
    from harness.evaluate.run import run_eval

    def run(suite_and_source, out_root: Path, run_id: str):
        suite, source = suite_and_source
        with one_torch_thread():
            return run_eval(suite, source, out_root=out_root, run_id=run_id, log=quiet, progress_bars=False)

    return run


@pytest.fixture(scope="session")
def qa_run(tmp_path_factory, eval_adapter, suite_config, eval_run):
    """korquad_sample, 12 samples, base + the session adapter, batch size 8 (read-only: copy to change)."""
    out = tmp_path_factory.mktemp("qa-run")
    return eval_run(suite_config("korquad_sample.yaml", qa_overrides(), {ADAPTER_NAME: eval_adapter}), out, "qa")


@pytest.fixture
def copy_run(tmp_path):
    def copy(run_dir: Path, name: str = "copy") -> Path:
        target = tmp_path / "runs" / name
        shutil.copytree(run_dir, target)
        return target

    return copy


@pytest.fixture(scope="session")
def seq2seq_setup(tmp_path_factory, harness_cache):
    """`seq2seq_setup("tiny:t5-ko")`: adapter, reference and tokenizer (`seq2seq_reference.setups`)."""
    from seq2seq_reference import setups

    return setups(tmp_path_factory)
