"""Faults injected while a command works: a full disk, a process killed (SIGKILL) or interrupted
(SIGINT) at several points, outputs that cannot be written, a merge killed mid-export. Each ends in
one line (or exit 130 for Ctrl-C), keeps what was finished, and the same command run again resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fault_helpers import ADAPTER, EVAL_ARGS, SUITES, assert_ok, assert_one_line_error, message_lines, read_records

SUITE = str(SUITES / "korquad_sample.yaml")
# Eight samples, one at a time: records are appended one by one, so a fault can land between them.
EIGHT = [
    "--limit",
    "8",
    "--batch-size",
    "1",
    "--set",
    "generation.max_new_tokens=4",
    "--set",
    "bootstrap.resamples=50",
    "--run-id",
    "r",
    "--out",
    "runs",
]

# Runs `harness` with every file it writes capped at LIMIT bytes (RLIMIT_FSIZE): a write past it fails
# with EFBIG as on a full disk, portably and without root. SIGXFSZ is ignored so the write fails
# instead of killing the process.
CAPPED = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
from harness.commands.cli import main
sys.exit(main(sys.argv[2:]))
"""


def harness(workdir: Path, argv: list, cap: int | None = None, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "OMP_NUM_THREADS": "1"}
    prefix = [sys.executable, "-c", CAPPED, str(cap)] if cap else [sys.executable, "-m", "harness"]
    return subprocess.Popen(
        [*prefix, *[str(a) for a in argv]],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def eval_again(workdir: Path, fault_adapter: Path) -> dict:
    """The same eval, without faults: it must complete, reusing what was finished."""
    code, _out, err = finish(harness(workdir, ["eval", SUITE, "--adapter", f"{ADAPTER}={fault_adapter}", *EIGHT]))
    assert_ok(code, err)
    results = json.loads((workdir / "runs" / "r" / "results.json").read_text(encoding="utf-8"))
    for model in ("base", ADAPTER):
        assert len(read_records(workdir / "runs" / "r" / "records" / f"{model}.jsonl")) == 8
    return results["throughput"]


# Each file is capped alike, so the first model's records fill up first (config.json is ~5 KB, eight
# records ~10 KB).
@pytest.mark.parametrize(
    "cap,reached",
    [(300, "config.json"), (3000, "config.json"), (6000, "base.jsonl")],
    ids=["disk full before the log", "disk full at the start", "disk full in the records"],
)
def test_disk_full_is_one_line_and_resumable(cap, reached, workdir, fault_adapter):
    code, _out, err = finish(
        harness(workdir, ["eval", SUITE, "--adapter", f"{ADAPTER}={fault_adapter}", *EIGHT], cap=cap)
    )
    line = assert_one_line_error(code, err, "eval", [reached, "free disk space"])
    assert "File too large" in line or "No space" in line
    records = workdir / "runs" / "r" / "records"
    kept = {
        m: read_records(records / f"{m}.jsonl") if (records / f"{m}.jsonl").is_file() else [] for m in ("base", ADAPTER)
    }  # every line whole: read_records would fail on a torn one
    throughput = eval_again(workdir, fault_adapter)
    assert throughput["base"]["reused"] == len(kept["base"]) and throughput[ADAPTER]["reused"] == len(kept[ADAPTER])
    if reached != "config.json":
        assert kept["base"], "records finished before the disk filled are kept"


def test_generate_to_a_full_device_is_one_line(workdir, run_cli):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    code, _out, err = run_cli(
        ["generate", "--base", "tiny:llama-ko", "--prompt", "x", "--max-new-tokens", "2", "--out", "/dev/full"]
    )
    assert_one_line_error(code, err, "generate", ["/dev/full", "free disk space"])


def _wait_for_lines(path: Path, n: int, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and path.read_bytes().count(b"\n") >= n:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"{path} never reached {n} lines")


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
@pytest.mark.parametrize(
    "model,after",
    [("base", 0), ("base", 3), (ADAPTER, 2)],
    ids=["before any record", "after three records", "in the second model"],
)
def test_stopped_eval_resumes(signum, model, after, workdir, fault_adapter):
    proc = harness(workdir, ["eval", SUITE, "--adapter", f"{ADAPTER}={fault_adapter}", *EIGHT])
    records = workdir / "runs" / "r" / "records"
    if after == 0:
        _wait_for_lines(workdir / "runs" / "r" / "config.json", 1, proc)
    else:
        _wait_for_lines(records / f"{model}.jsonl", after, proc)
    proc.send_signal(signum)
    code, _out, err = finish(proc)
    if signum == signal.SIGINT:
        assert code == 130 and "Traceback" not in err, err
        assert message_lines(err)[-1] == "harness eval: interrupted; finished work is on disk"
    else:
        assert code == -signal.SIGKILL
    kept = {
        m: len(read_records(records / f"{m}.jsonl")) if (records / f"{m}.jsonl").is_file() else 0
        for m in ("base", ADAPTER)
    }
    throughput = eval_again(workdir, fault_adapter)
    assert throughput["base"]["reused"] >= min(kept["base"], 8) and throughput["base"]["reused"] >= (
        after if model == "base" else 8
    )


def test_eval_torn_inside_a_character_resumes(workdir, fault_adapter):
    """A record cut inside a UTF-8 character (what a full disk used to leave) does not stop the next run."""
    code, _out, err = finish(harness(workdir, ["eval", SUITE, "--adapter", f"{ADAPTER}={fault_adapter}", *EIGHT]))
    assert_ok(code, err)
    path = workdir / "runs" / "r" / "records" / "base.jsonl"
    whole = path.read_bytes().split(b"\n")
    path.write_bytes(b"\n".join(whole[:3]) + b"\n" + whole[3][: whole[3].index("문".encode()) + 1])
    throughput = eval_again(workdir, fault_adapter)
    assert throughput["base"]["reused"] == 3 and throughput[ADAPTER]["reused"] == 8


# --- outputs that cannot be written --------------------------------------------------------------------
# Tests run as root, where chmod does not stop a write; a file standing where a folder must go does.


def test_eval_out_under_a_file(workdir, run_cli):
    (workdir / "f.txt").write_text("x")
    code, _out, err = run_cli(["eval", SUITE, "--out", "f.txt", *EVAL_ARGS])
    assert_one_line_error(code, err, "eval", ["f.txt", "file stands where a folder"])
    assert (workdir / "f.txt").read_text() == "x"


def test_report_output_under_a_file(fault_run, workdir, run_cli):
    (workdir / "f.txt").write_text("x")
    for argv in (["-o", "f.txt/r.html"], ["--md", "f.txt/r.md"]):
        code, _out, err = run_cli(["report", fault_run, *argv])
        assert_one_line_error(code, err, "report", ["f.txt", "cannot write"])


def test_rescore_output_where_a_folder_stands(run_copy, run_cli):
    (run_copy / "results-x.json").mkdir()
    code, _out, err = run_cli(["rescore", run_copy, "-o", "results-x.json"])
    assert_one_line_error(code, err, "rescore", ["results-x.json", "cannot write"])


def test_train_output_under_a_file(workdir, run_cli):
    (workdir / "f.txt").write_text("x")
    code, _out, err = run_cli(
        ["train", "--output-dir", "f.txt/ad", "--set", "training.max_steps=1", "--set", "data.limit=2"]
    )
    assert_one_line_error(code, err, "train", ["f.txt"])


# --- a merge killed mid-export ---------------------------------------------------------------------------


def test_merge_removes_what_a_killed_merge_left(workdir, fault_adapter, run_cli):
    exports = workdir / "exports"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        left = {
            "dead": (exports / ".m-aaaaaaaa", str(dead.pid)),
            "unowned": (exports / ".m-bbbbbbbb", None),
            "running": (exports / ".m-cccccccc", str(alive.pid)),
            "other": (exports / ".m-v2-dddddddd", None),
        }
        for path, pid in left.values():
            path.mkdir(parents=True)
            (path / "model.safetensors").write_bytes(b"\0" * 1024)
            if pid:
                (path / ".harness-owner-pid").write_text(pid)
        code, _out, err = run_cli(
            ["merge", "--base", "tiny:llama-ko", "--adapter", fault_adapter, "--out", "exports/m", "--dtype", "fp32"]
        )
        assert_ok(code, err)
    finally:
        alive.kill()
        alive.wait()
    assert not left["dead"][0].exists() and not left["unowned"][0].exists()
    assert left["running"][0].exists() and left["other"][0].exists()
    assert (exports / "m" / "merge_record.json").is_file() and not (exports / "m" / ".harness-owner-pid").exists()
    assert sorted(p.name for p in exports.iterdir()) == [".m-cccccccc", ".m-v2-dddddddd", "m"]
