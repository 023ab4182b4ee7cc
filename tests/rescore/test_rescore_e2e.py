"""The real loop: `harness eval` of the summarization suite on the tiny model, then `harness rescore`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SUITE = Path(__file__).resolve().parents[2] / "suites" / "summarization_ko.yaml"


def test_eval_then_rescore_with_another_tokenizer(run_cli, tiny_path, workdir):
    code, out, err = run_cli(
        [
            "eval",
            SUITE,
            "--limit",
            "4",
            "--set",
            "generation.max_new_tokens=8",
            "--set",
            "bootstrap.resamples=100",
            "--out",
            "runs",
            "--run-id",
            "sum",
        ]
    )
    assert code == 0, err
    run = workdir / "runs" / "sum"
    before = {p: hashlib.sha256(p.read_bytes()).digest() for p in [*run.glob("records/*"), run / "results.json"]}
    code, out, err = run_cli(["rescore", run, "--set", "metrics.rouge.tokenizer=whitespace", "-o", "results-ws.json"])
    assert code == 0, err
    assert {p: hashlib.sha256(p.read_bytes()).digest() for p in before} == before
    old = json.loads((run / "results.json").read_text(encoding="utf-8"))
    new = json.loads((run / "results-ws.json").read_text(encoding="utf-8"))
    assert [l for l in new["metric_info"] if l.startswith("rouge")] == [
        "rouge1[whitespace]",
        "rouge2[whitespace]",
        "rougeL[whitespace]",
        "rougeLsum[whitespace]",
    ]
    for label in ("bleu[mecab]", "chrf"):
        assert new["metrics"]["base"][label] == old["metrics"]["base"][label]
    code, out, err = run_cli(["report", run, "--results", "results-ws.json", "-o", "page.html"])
    assert code == 0 and "rouge1[whitespace]" in out
