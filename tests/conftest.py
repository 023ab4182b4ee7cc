"""Shared test setup: offline, one tiny-model cache per session, a scratch working directory
and an in-process CLI runner.

Everything runs against the real stack (transformers, peft, bitsandbytes on CPU, TRL); the
only thing shared between tests is the tiny model's cache, so it is built once per session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Set before transformers / datasets / huggingface_hub are imported anywhere in the run.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
# One intra-op thread: the tiny model gains nothing from more, and on a small shared CI box (2 cores,
# other jobs running) torch's spinning worker threads made training several times slower and erratic.
# Set OMP_NUM_THREADS yourself to override.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_REF = "tiny:llama-ko"


@pytest.fixture(scope="session", autouse=True)
def harness_cache(tmp_path_factory) -> Path:
    """HARNESS_CACHE for the whole session: the tiny model is built once, on first use."""
    cache = tmp_path_factory.mktemp("harness-cache")
    old = os.environ.get("HARNESS_CACHE")
    os.environ["HARNESS_CACHE"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("HARNESS_CACHE", None)
    else:
        os.environ["HARNESS_CACHE"] = old


@pytest.fixture(scope="session")
def tiny_ref() -> str:
    return TINY_REF


@pytest.fixture(scope="session")
def tiny_path(harness_cache) -> Path:
    """The session's tiny model directory (built on first request)."""
    from harness.model.tiny import tiny_model_path

    return tiny_model_path(TINY_REF)


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """A fresh empty current directory, so relative outputs (adapters/NAME) land in tmp."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def run_cli(workdir, capsys):
    """Run `harness ARGV...` in-process; returns (exit_code, stdout, stderr).

    argparse's own exits (--help, usage errors) are turned into their exit code too.
    """
    from harness.commands.cli import main

    def run(argv: list[str]) -> tuple[int, str, str]:
        capsys.readouterr()  # drop anything printed before this call
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def run_subprocess(workdir):
    """Run `python -m harness ARGV...` in a real subprocess (same venv, same offline env)."""

    def run(argv: list[str], timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
        env = {**os.environ, **(env or {})}
        env.setdefault("PYTHONIOENCODING", "utf-8")
        return subprocess.run(
            [sys.executable, "-m", "harness", *[str(a) for a in argv]],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


@pytest.fixture
def read_page():
    """Read a report page: (html, the JSON of its data block)."""

    def read(path) -> tuple[str, dict]:
        import re

        html = Path(path).read_text(encoding="utf-8")
        m = re.search(r'<script type="application/json" id="data">(.*?)</script>', html, re.S)
        assert m, "no data block"
        return html, json.loads(m.group(1))

    return read
