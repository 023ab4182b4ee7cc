"""`harness report` with runs of several suites: one page (and one Markdown file) with a section per
suite, each with its own metrics, every name escaped; two real evals (perplexity and QA) on the tiny model."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from markupsafe import escape
from support import harness

REPO = Path(__file__).resolve().parents[2]
FAST = ["--base", "tiny:llama-ko", "--limit", "2", "--set", "bootstrap.resamples=50"]


@pytest.fixture(scope="module")
def two_suites(tmp_path_factory, harness_cache) -> list[Path]:
    runs = tmp_path_factory.mktemp("multi-runs")
    paths = []
    for suite, extra in (("perplexity_ko.yaml", []), ("korquad_sample.yaml", ["--set", "generation.max_new_tokens=4"])):
        code, out, err = harness("eval", REPO / "suites" / suite, *FAST, *extra, "--out", runs)
        assert code == 0, err
        paths.append(Path(re.search(r"^run: (.+)$", out, re.M).group(1)))
    return paths


@pytest.mark.slow
def test_two_suites_one_page_a_section_each(two_suites, tmp_path):
    import json

    code, out, err = harness("report", *two_suites, "-o", tmp_path / "r.html", "--md", tmp_path / "r.md")
    assert code == 0, err
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    sections = re.findall(r'<section id="suite-\d" class="suite" data-suite="([^"]+)">', page)
    assert sections == ["perplexity-ko", "korquad-sample"]
    perplexity, qa = page.split('data-suite="korquad-sample"')
    for run, part in zip(two_suites, (perplexity, qa)):
        results = json.loads((run / "results.json").read_text(encoding="utf-8"))
        for label in results["metric_info"]:
            assert f'data-metric="{label}"' in part
    md = (tmp_path / "r.md").read_text(encoding="utf-8")
    assert md.startswith("# harness report: 2 suites") and "## perplexity-ko" in md and "## korquad-sample" in md
    assert "perplexity-ko" in out and "korquad-sample" in out


def test_names_are_escaped_in_a_page_of_several_suites(tmp_path, write_qa_run, make_samples):
    samples, outputs = make_samples(4)
    evil = '<img src=x onerror="alert(1)">'
    outputs = {"base": outputs["base"], evil: next(v for k, v in outputs.items() if k != "base")}
    a = write_qa_run(tmp_path / "runs", "a", samples, outputs)
    b = write_qa_run(tmp_path / "runs", "b", samples, outputs, suite=f"s{evil}")
    code, _out, err = harness("report", a, b, "-o", tmp_path / "r.html", "--md", tmp_path / "r.md")
    assert code == 0, err
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<img" not in page
    assert str(escape(evil)) in page
    md = (tmp_path / "r.md").read_text(encoding="utf-8")
    assert "<img" not in md
