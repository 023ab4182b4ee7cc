"""Resume: records on disk are reused only when everything that produced them matches.

(a) in-process: lines removed from a records file plus a torn half line are regenerated, the
    rest reused, and the results equal the first run's;
(b) a real SIGKILL of `python -m harness eval` mid-run, then the same command again, equals an
    uninterrupted run with the same --run-id;
(c) an adapter retrained in place (same name and path, new weights) is regenerated in full
    while the base's records are reused; a base whose weights change in place likewise.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time

import pytest
from eval_helpers import ADAPTER_NAME, SUITES, qa_overrides, read_records, read_results, train_adapter


def comparable(results: dict) -> dict:
    return {"metrics": results["metrics"], "deltas": results["deltas"]}


@pytest.mark.slow
def test_resume_regenerates_removed_and_torn_records(qa_run, eval_adapter, suite_config, eval_run, copy_run):
    run_dir = copy_run(qa_run.run_dir, "qa")
    original = read_records(run_dir, ADAPTER_NAME)
    records_file = run_dir / "records" / f"{ADAPTER_NAME}.jsonl"
    lines = records_file.read_text(encoding="utf-8").splitlines(keepends=True)
    assert len(lines) == 12
    torn = lines[-1][: len(lines[-1]) // 2]  # half of a record, no newline: what a kill leaves
    records_file.write_text("".join(lines[:-3]) + torn, encoding="utf-8")
    (run_dir / "results.json").unlink()

    suite = suite_config("korquad_sample.yaml", qa_overrides(), {ADAPTER_NAME: eval_adapter})
    resumed = eval_run(suite, run_dir.parent, "qa").results

    assert comparable(resumed) == comparable(qa_run.results)
    assert resumed["throughput"]["base"]["reused"] == 12 and resumed["throughput"]["base"]["samples"] == 0
    assert resumed["throughput"][ADAPTER_NAME]["reused"] == 9
    assert resumed["throughput"][ADAPTER_NAME]["samples"] == 3
    # The file is rewritten whole and in sample order: no torn line, no duplicates.
    after = read_records(run_dir, ADAPTER_NAME)
    assert [r["id"] for r in after] == [r["id"] for r in original]
    assert [r["prediction"] for r in after] == [r["prediction"] for r in original]


@pytest.mark.slow
def test_resume_after_sigkill_equals_uninterrupted_run(eval_adapter, workdir, run_cli, tmp_path):
    args = [
        "eval",
        SUITES / "korquad_sample.yaml",
        "--limit",
        "10",
        "--batch-size",
        "1",
        "--set",
        "generation.max_new_tokens=10",
        "--adapter",
        f"{ADAPTER_NAME}={eval_adapter}",
        "--run-id",
        "kill",
    ]
    killed_root, clean_root = tmp_path / "killed", tmp_path / "clean"
    records_file = killed_root / "kill" / "records" / "base.jsonl"

    env = dict(os.environ, PYTHONIOENCODING="utf-8", OMP_NUM_THREADS="1")
    with (tmp_path / "killed.log").open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "harness", *map(str, args), "--out", str(killed_root)],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.time() + 180
            while time.time() < deadline and proc.poll() is None:
                if records_file.is_file() and records_file.read_bytes().count(b"\n") >= 2:
                    break
                time.sleep(0.02)
            assert proc.poll() is None, (
                "eval finished or failed before it could be killed:\n" + (tmp_path / "killed.log").read_text()
            )
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(timeout=30) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert not (killed_root / "kill" / "results.json").exists()
    written = records_file.read_bytes().count(b"\n")
    assert 2 <= written < 10

    code, _, err = run_cli([*args, "--out", killed_root])
    assert code == 0, err
    code, _, err = run_cli([*args, "--out", clean_root])
    assert code == 0, err

    resumed, clean = read_results(killed_root / "kill"), read_results(clean_root / "kill")
    assert comparable(resumed) == comparable(clean)
    assert resumed["throughput"]["base"]["reused"] >= 2
    assert resumed["throughput"]["base"]["reused"] + resumed["throughput"]["base"]["samples"] == 10
    assert clean["throughput"]["base"]["reused"] == 0
    for model in ("base", ADAPTER_NAME):
        assert [r["prediction"] for r in read_records(killed_root / "kill", model)] == [
            r["prediction"] for r in read_records(clean_root / "kill", model)
        ]


@pytest.mark.slow
def test_adapter_retrained_in_place_is_not_reused(eval_adapter, suite_config, eval_run, tmp_path):
    import shutil

    adapter = tmp_path / "adapters" / ADAPTER_NAME
    shutil.copytree(eval_adapter, adapter)
    weights = adapter / "adapter_model.safetensors"
    overrides = qa_overrides(**{"dataset.limit": 8, "generation.max_new_tokens": 8})

    first = eval_run(suite_config("korquad_sample.yaml", overrides, {ADAPTER_NAME: adapter}), tmp_path / "runs", "c")
    old_sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert first.results["throughput"][ADAPTER_NAME]["samples"] == 8

    # Same name, same path, other weights (a few steps from a fresh LoRA init with another seed).
    train_adapter(adapter, **{"training.max_steps": 3, "training.seed": 7})
    new_sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert new_sha != old_sha

    second = eval_run(suite_config("korquad_sample.yaml", overrides, {ADAPTER_NAME: adapter}), tmp_path / "runs", "c")
    throughput = second.results["throughput"]
    assert throughput["base"] == {**throughput["base"], "samples": 0, "reused": 8}
    assert throughput[ADAPTER_NAME]["reused"] == 0 and throughput[ADAPTER_NAME]["samples"] == 8
    adapter_info = next(m for m in second.results["models"] if m["name"] == ADAPTER_NAME)
    assert adapter_info["sha256"] == new_sha
    # Stale records of the old weights are dropped from the file.
    assert len(read_records(second.run_dir, ADAPTER_NAME)) == 8


def test_base_replaced_in_place_is_not_reused(suite_config, eval_run, tiny_path, tmp_path):
    """A base directory whose weights change at the same path (an export merged again in place)."""
    import shutil

    from safetensors.torch import load_file, save_file

    base = tmp_path / "exports" / "merged"
    shutil.copytree(tiny_path, base)
    overrides = qa_overrides(**{"dataset.limit": 8, "generation.max_new_tokens": 8, "models.base": str(base)})
    first = eval_run(suite_config("korquad_sample.yaml", overrides, {}), tmp_path / "runs", "d")
    assert first.results["throughput"]["base"]["samples"] == 8

    (base / "README.md").write_text("a model card edited by hand\n", encoding="utf-8")
    again = eval_run(suite_config("korquad_sample.yaml", overrides, {}), tmp_path / "runs", "d")
    assert again.results["throughput"]["base"]["reused"] == 8  # a model card does not change the outputs

    weights = load_file(str(base / "model.safetensors"))
    weights["lm_head.weight"] = weights["lm_head.weight"].flip(0).contiguous()
    save_file(weights, str(base / "model.safetensors"), metadata={"format": "pt"})
    second = eval_run(suite_config("korquad_sample.yaml", overrides, {}), tmp_path / "runs", "d")
    assert second.results["throughput"]["base"]["reused"] == 0
    assert second.results["throughput"]["base"]["samples"] == 8
    assert len(read_records(second.run_dir, "base")) == 8


def test_a_base_is_fingerprinted_by_content_once_per_file(tmp_path, monkeypatch):
    import hashlib
    import json

    from harness.model.fingerprint import directory_sha256

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}", encoding="utf-8")
    (model / "model.safetensors").write_bytes(b"weights")
    first = directory_sha256(model)
    cached = json.loads((tmp_path / "cache" / "file-hashes.json").read_text(encoding="utf-8"))
    assert hashlib.sha256(b"weights").hexdigest() in cached.values()
    (model / "merge_record.json").write_text("{}", encoding="utf-8")
    assert directory_sha256(model) == first
    (model / "model.safetensors").write_bytes(b"other weights")
    assert directory_sha256(model) != first

    # The hub cache keeps a large file as blobs/SHA256, linked from its snapshot: the name is the hash.
    blobs, snapshot = tmp_path / "hub" / "blobs", tmp_path / "hub" / "snapshots" / "abc"
    blobs.mkdir(parents=True)
    snapshot.mkdir(parents=True)
    claimed = "0" * 64
    (blobs / claimed).write_bytes(b"not what the name says")
    (snapshot / "model.safetensors").symlink_to(blobs / claimed)
    expected = hashlib.sha256(f"model.safetensors\0{claimed}\n".encode()).hexdigest()
    assert directory_sha256(snapshot) == expected


@pytest.mark.slow
def test_reused_records_are_rescored_with_the_suites_current_metrics(suite_config, eval_run, tmp_path):
    overrides = {"dataset.limit": 4, "generation.max_new_tokens": 4}
    first = eval_run(suite_config("korquad_sample.yaml", {**overrides, "metrics": ["exact_match"]}), tmp_path, "m")
    assert set(first.results["metrics"]["base"]) == {"exact_match"}
    second = eval_run(
        suite_config("korquad_sample.yaml", {**overrides, "metrics": ["exact_match", "f1"]}), tmp_path, "m"
    )
    assert second.results["throughput"]["base"]["reused"] == 4
    assert set(second.results["metrics"]["base"]) == {"exact_match", "f1"}
    assert all(set(r["metrics"]) == {"exact_match", "f1"} for r in read_records(second.run_dir, "base"))


def test_appending_after_a_torn_line_keeps_the_new_record(tmp_path):
    """A record appended after a killed run's half line must not be glued to it (and lost)."""
    from harness.runs.store import RunDir

    run = RunDir(tmp_path / "r").create()
    run.records_file("base").write_text('{"key": "a", "id": "1"}\n{"key": "b", "id', encoding="utf-8")
    append, close = run.appender("base")
    append({"key": "c", "id": "3"})
    close()
    assert set(run.load_records("base")) == {"a", "c"}
