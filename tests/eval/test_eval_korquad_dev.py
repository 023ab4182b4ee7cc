"""KorQuAD 1.0 dev (real data, not shipped): when ../shared/data/korquad/KorQuAD_v1.0_dev.json
(relative to the repository root) or $KORQUAD_DEV exists, suites/korquad.yaml runs on 5 samples
of it and records its sha256; otherwise the test is skipped, saying why."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from eval_helpers import REPO_ROOT, SUITES, read_records

SHARED = REPO_ROOT.parent / "shared" / "data" / "korquad" / "KorQuAD_v1.0_dev.json"


def korquad_dev() -> Path | None:
    env = os.environ.get("KORQUAD_DEV")
    for candidate in ([Path(env)] if env else []) + [SHARED]:
        if candidate.is_file():
            return candidate
    return None


@pytest.mark.slow
def test_korquad_dev_five_samples(run_cli, monkeypatch, tmp_path):
    path = korquad_dev()
    if path is None:
        pytest.skip(f"KorQuAD 1.0 dev not found: set KORQUAD_DEV or place it at {SHARED}")
    monkeypatch.setenv("KORQUAD_DEV", str(path))  # the suite's path_env, not --data
    code, out, err = run_cli(
        [
            "eval",
            SUITES / "korquad.yaml",
            "--limit",
            "5",
            "--batch-size",
            "5",
            "--set",
            "generation.max_new_tokens=4",
            "--out",
            tmp_path,
            "--run-id",
            "dev",
            "--json",
        ]
    )
    assert code == 0, err
    import json

    results = json.loads(out)  # --json: stdout is the JSON document alone
    assert results["suite"] == "korquad-dev" and results["n_samples"] == 5
    assert results["dataset"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert results["dataset"]["path"] == str(path) and results["dataset"]["format"] == "squad"
    records = read_records(tmp_path / "dev", "base")
    assert len(records) == 5 and len({r["id"] for r in records}) == 5
    assert all(r["generated_tokens"] <= 4 and r["references"] for r in records)
    assert set(results["metrics"]["base"]) == {"exact_match", "f1"}
