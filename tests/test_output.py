"""What reaches the terminal is harness's own: the libraries' loggers, warnings and progress bars go
to the command's log file (and to the terminal too with --verbose); an error stays one line.

The real-process tests run the README's loop through `python -m harness`, as a user does, on the
installed library versions: the locked ones in CI, the newest under `tox -e latest`.
"""

from __future__ import annotations

import logging
import re
import sys
import warnings
from pathlib import Path

import pytest

from harness.runtime.console import divert_library_output, keep_log_in, terminal

# A line harness writes to stderr: its own messages, or one of its progress bars ("train: 40%|...").
OURS_ON_STDERR = re.compile(r"^(harness( \w+)?: |[^:|]{1,80}: +\d+%\|)")


def _terminal_lines(text: str) -> list[str]:
    return [line for line in re.split(r"[\r\n]+", text) if line.strip()]


def _library_lines(log: Path) -> set[str]:
    """The log's lines that came from libraries (not its run headers, not harness's own entries)."""
    return {
        line.strip()
        for line in _terminal_lines(log.read_text(encoding="utf-8"))
        if not line.startswith("===") and " harness." not in line and len(line.strip()) > 8
    }


def _assert_only_ours(proc, logs: list[Path]) -> None:
    assert proc.returncode == 0, proc.stderr
    for line in _terminal_lines(proc.stderr):
        assert OURS_ON_STDERR.match(line), f"not harness's own line on stderr: {line!r}"
    library = set().union(*(_library_lines(log) for log in logs))
    for line in _terminal_lines(proc.stdout):
        assert line.strip() not in library, f"a library's line on stdout: {line!r}"
        assert not line.startswith("{'"), f"a trainer's log entry on stdout: {line!r}"


@pytest.mark.slow
def test_the_readme_loop_prints_only_harness_output(workdir, run_subprocess, tiny_path):
    train = run_subprocess(["train", "--overwrite", "--set", "training.max_steps=2", "--set", "training.eval_steps=2"])
    train_log = workdir / "adapters" / "tiny-ko-qa" / "train.log"
    _assert_only_ours(train, [train_log])
    assert "harness.train.progress: step 2:" in train_log.read_text(encoding="utf-8")  # the trainer's entries, kept
    assert "train: 100%|" in train.stderr  # harness's bar stays

    suite = Path(__file__).resolve().parents[1] / "suites" / "korquad_sample.yaml"
    evaluate = run_subprocess(["eval", suite, "--adapter", "tiny-ko-qa=adapters/tiny-ko-qa", "--limit", "4"])
    [eval_log] = workdir.glob("runs/*/eval.log")
    _assert_only_ours(evaluate, [eval_log])
    assert "Δ vs base" in evaluate.stdout

    report = run_subprocess(["report", "--html", *workdir.glob("runs/*")])
    _assert_only_ours(report, [])
    assert re.search(r"report: .*\.html", report.stdout)


def test_an_error_after_the_model_loads_is_one_line(workdir, run_subprocess, tiny_ref):
    proc = run_subprocess(["generate", "--base", tiny_ref, "--prompt", "가" * 5000, "--max-new-tokens", "2"])
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("harness generate: error: "), proc.stderr


def _chatter() -> None:
    logging.getLogger("transformers.modeling_utils").warning("a library's warning")
    warnings.warn("a library's deprecation", FutureWarning, stacklevel=1)
    print("a library's print to stderr", file=sys.stderr)


def test_library_output_goes_to_the_log_file_not_the_terminal(tmp_path, capsys):
    log = tmp_path / "out" / "eval.log"
    with divert_library_output("eval"):
        _chatter()
        (tmp_path / "out").mkdir()
        keep_log_in(log)
        print("harness eval: our own line", file=terminal())
    out, err = capsys.readouterr()
    assert err == "harness eval: our own line\n" and out == ""
    kept = log.read_text(encoding="utf-8")
    for needle in ("a library's warning", "FutureWarning: a library's deprecation", "a library's print to stderr"):
        assert needle in kept


def test_verbose_shows_library_output_on_the_terminal_too(tmp_path, capsys):
    with divert_library_output("eval", verbose=True):
        keep_log_in(tmp_path / "eval.log")
        _chatter()
    err = capsys.readouterr().err
    assert "a library's warning" in err and "a library's print to stderr" in err
    assert "a library's warning" in (tmp_path / "eval.log").read_text(encoding="utf-8")


def test_a_log_is_not_a_reason_to_create_an_output_folder(tmp_path, monkeypatch, capsys):
    """A command that fails before it makes its output folder leaves the log in the cache."""
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    with divert_library_output("train"):
        keep_log_in(tmp_path / "adapters" / "x" / "train.log")
        _chatter()
    assert not (tmp_path / "adapters").exists()
    assert "a library's warning" in (tmp_path / "cache" / "logs" / "train.log").read_text(encoding="utf-8")
    assert capsys.readouterr().err == ""


def test_hub_kernels_are_not_fetched_unless_asked(workdir):
    """bitsandbytes' CPU backend asks `kernels` for a binary from the hub when imported; with the hub
    online (HF_HUB_OFFLINE unset) nothing may be fetched unless HARNESS_HUB_KERNELS=1."""
    import os
    import subprocess

    pytest.importorskip("kernels")
    code = (
        "import socket\n"
        "def refuse(*a, **k): raise AssertionError('harness opened a connection')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "from harness.commands.cli import main\n"
        "assert main(['doctor']) == 0\n"
        "import kernels\n"
        "try:\n"
        "    kernels.get_kernel('kernels-community/quantization-bitsandbytes', version=1)\n"
        "except RuntimeError as exc:\n"
        "    assert 'HARNESS_HUB_KERNELS=1' in str(exc), exc\n"
        "else:\n"
        "    raise AssertionError('a hub kernel was loaded')\n"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HARNESS_HUB_KERNELS")
    }
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=workdir, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "publisher trust" not in proc.stderr, proc.stderr

    env["HARNESS_HUB_KERNELS"] = "1"
    asked = subprocess.run(
        [
            sys.executable,
            "-c",
            "from harness.runtime.env import block_hub_kernels; block_hub_kernels(); "
            "import kernels; print(kernels.get_kernel.__module__)",
        ],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert asked.returncode == 0 and not asked.stdout.startswith("harness"), asked.stderr
