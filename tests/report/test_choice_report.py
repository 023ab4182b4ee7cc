"""The report of a choice run: breakdown tables (HTML and Markdown) and each sample's choices with
their log-likelihoods, the gold and each model's pick; hostile dataset text stays text, and a NaN or
infinite log-likelihood shows as such."""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "breakdown"))

from choice_run import HOSTILE, HOSTILE_CATEGORY, HOSTILE_SUBJECT, write_choice_run

from harness.report import load_report, render_html, render_markdown
from harness.runs.store import RunDir


@pytest.fixture
def choice_run(tmp_path) -> Path:
    """A run with hostile choices and subject names; one model's log-likelihoods of two samples are
    NaN and -inf (written after scoring: the test is about showing them)."""
    path = write_choice_run(tmp_path / "runs", n=30, hostile=True)
    store = RunDir(path)
    records = store.read_records("ko-mc")
    records[1]["loglikelihoods"][2] = math.nan
    records[2]["loglikelihoods"] = [-math.inf] * len(records[2]["loglikelihoods"])
    store.records_file("ko-mc").write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _data(html: str) -> dict:
    block = re.search(r'<script type="application/json" id="data">(.*?)</script>', html, re.S)
    assert block, "no data block"
    return json.loads(block.group(1))


def test_html_sample_view_has_choices_and_log_likelihoods(choice_run):
    report = load_report([choice_run])
    html = render_html(report)
    data = _data(html)
    records = {m: RunDir(choice_run).read_records(m) for m in ("base", "ko-mc")}
    for n, sample in enumerate(data["samples"]):
        base, tuned = records["base"][n], records["ko-mc"][n]
        assert set(sample) == {"id", "p", "r", "o", "s", "c", "g", "sub", "ll", "pk", "pn"}
        assert sample["c"] == base["choices"] and sample["g"] == base["gold"]
        assert sample["sub"] == base["subject"]
        assert sample["ll"][0] == base["loglikelihoods"]
        for m, record in enumerate((base, tuned)):
            ll = record["loglikelihoods"]
            if all(math.isfinite(x) for x in ll):
                assert sample["ll"][m] == ll and sample["pk"][m] == ll.index(max(ll))
                per_char = [x / len(c) for x, c in zip(ll, record["choices"])]
                assert sample["pn"][m] == per_char.index(max(per_char))
    # NaN: no pick, the value travels as the text "nan"; all -inf: the first choice, as numpy's argmax
    assert data["samples"][1]["ll"][1][2] == "nan" and data["samples"][1]["pk"][1] is None
    assert data["samples"][2]["ll"][1] == ["-inf"] * 4 and data["samples"][2]["pk"][1] == 0
    assert [s["c"][n % 4] for n, s in enumerate(data["samples"][: len(HOSTILE)])] == HOSTILE


def test_hostile_text_is_escaped_in_html(choice_run):
    html = render_html(load_report([choice_run]))
    assert "<script>alert" not in html and "<img src=x" not in html
    assert html.count("</script>") == html.count("<script")  # nothing closes a block early
    assert "&lt;img src=x onerror=alert(3)&gt;|**law**" in html  # subject tables: autoescaped
    assert "HUMSS &lt;/td&gt;&lt;td&gt;" in html
    assert 'id="breakdown-table"' in html and '<details class="subjects"' in html


def test_breakdown_tables_in_html_show_results_figures(choice_run):
    html = render_html(load_report([choice_run]))
    results = json.loads((choice_run / "results.json").read_text())
    b = results["breakdown"]
    stem = b["columns"]["ko-mc"]["categories"]["STEM"]["acc"]["value"]
    row = re.search(r'<tr class="breakdown-row" data-group="STEM">(.*?)</tr>', html, re.S).group(1)
    assert f"{stem:.2f}" in row and "Δ" in row
    for subject in b["subjects"]:
        value = b["columns"]["base"]["subjects"][subject]["acc"]
        assert f"{value:.2f}" in html
    macro = re.search(r'data-group="macro over 5 subjects">(.*?)</tr>', html, re.S).group(1)
    assert macro.count("[") == 2 * 2 + 2  # acc, acc_norm: base, ko-mc and Δ; f1 (corpus): none
    assert 'class="breakdown-row average" data-group="macro over 5 subjects"' in html


def test_markdown_breakdown_is_escaped(choice_run):
    md = render_markdown(load_report([choice_run]))
    assert "By category" in md and "<details><summary>By subject (5)</summary>" in md
    assert HOSTILE_SUBJECT not in md and "<img" not in md and "</td>" not in md
    assert r"&lt;img src=x onerror=alert\(3\)&gt;\|\*\*law\*\*" in md
    assert HOSTILE_CATEGORY.replace("<", "").split()[0] in md
    table = [line for line in md.splitlines() if line.startswith("| STEM |")]
    assert len(table) == 1 and table[0].count(" | ") == 2 + 2 * 3 - 1


def test_no_breakdown_for_runs_without_subjects(qa_run):
    report = load_report([qa_run])
    assert 'id="breakdown-table"' not in render_html(report) and "By category" not in render_markdown(report)
    sample = _data(render_html(report))["samples"][0]
    assert set(sample) == {"id", "p", "r", "o", "s"}  # a QA sample's data as before
