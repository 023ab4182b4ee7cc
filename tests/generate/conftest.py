"""Fixtures for `harness generate` / `harness chat`: the eval tests' tiny adapter recipe (trained
once per session here too), one torch thread, and the one-line error check."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "eval"))

from eval_helpers import ADAPTER_NAME, SUITES, one_torch_thread, train_adapter
from support import message_lines


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="session")
def gen_adapter(tmp_path_factory, harness_cache) -> Path:
    """A real LoRA adapter on tiny:llama-ko (the eval tests' recipe)."""
    out = tmp_path_factory.mktemp("gen-adapter") / ADAPTER_NAME
    train_adapter(out)
    assert (out / "adapter_model.safetensors").is_file()
    return out


@pytest.fixture
def gen_error(run_cli):
    """Run `harness generate ARGS`; assert exit 2 and one stderr line containing each of `expected`."""

    def check(args: list, *expected: str, command: str = "generate") -> str:
        code, _out, err = run_cli([command, *args])
        lines = message_lines(err)
        assert code == 2, f"exit {code}; stderr:\n{err}"
        assert len(lines) == 1, "expected one line on stderr, got:\n" + "\n".join(lines)
        assert lines[0].startswith(f"harness {command}: error: "), lines[0]
        for text in expected:
            assert text in lines[0], f"{text!r} not in {lines[0]!r}"
        return lines[0]

    return check


@pytest.fixture(scope="session")
def suites_dir() -> Path:
    return SUITES
