"""The real pipeline: `harness eval` on the tiny model, then `harness report --html --md`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness import __version__

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_eval_then_report(run_subprocess, workdir, tiny_path, read_page):
    proc = run_subprocess(
        [
            "eval",
            REPO / "suites" / "korquad_sample.yaml",
            "--base",
            "tiny:llama-ko",
            "--limit",
            "8",
            "--set",
            "generation.max_new_tokens=8",
            "--out",
            "runs",
            "--run-id",
            "korquad-sample-e2e",
            "--verify",
            "4",
        ],
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    # --verify: the fast engine's answers re-run on the plain path, in the table and on the page
    assert "checked against the plain path" in proc.stdout and "base: 4/4 answers equal the plain path's" in proc.stdout
    proc = run_subprocess(["report", "--html", "--md"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "report: reports/korquad-sample-e2e.html" in proc.stdout
    assert "report: reports/korquad-sample-e2e.md" in proc.stdout
    assert "exact_match" in proc.stdout and "f1" in proc.stdout
    html, data = read_page(workdir / "reports" / "korquad-sample-e2e.html")
    assert re.findall(r'<section id="([\w-]+)" data-section=', html) == ["overview", "metrics", "samples"]
    assert re.findall(r'<th data-metric="([^"]+)"', html) == ["exact_match", "f1"]
    assert len(data["samples"]) == 8 and [m["name"] for m in data["models"]] == ["base"]
    results = json.loads((workdir / "runs" / "korquad-sample-e2e" / "results.json").read_text())
    for label, entry in results["metrics"]["base"].items():  # noqa: B007
        assert f"{entry['value']:.2f}" in html
    assert results["dataset"]["sha256"] in html and f"harness {__version__}" in html
    assert re.search(r'id="verify">.*base: 4/4 answers equal the plain path', html)
    md = (workdir / "reports" / "korquad-sample-e2e.md").read_text(encoding="utf-8")
    assert "| model | exact_match ↑ | f1 ↑ |" in md
