"""The forgetting view of a report of several suites: one row per adapter, its deltas on the target suite
beside its deltas on the other suites' headline metrics, the figures those runs' results.json hold, every
name escaped (runs written in-process, conftest.write_run)."""

from __future__ import annotations

import html
import json
import re

import pytest
from support import harness, message_lines

EVIL = '<img src=x onerror="alert(1)">|*'


@pytest.fixture
def three_suites(tmp_path, write_qa_run, make_samples):
    """Runs of three suites on one base: the target and another with both adapters, a third with one."""
    samples, outputs = make_samples(12)
    root = tmp_path / "runs"
    return [
        write_qa_run(root, "target-1", samples, outputs, suite="target"),
        write_qa_run(root, "other-1", samples, outputs, suite="other"),
        write_qa_run(root, "third-1", samples, {k: outputs[k] for k in ("base", "ko-qa")}, suite="third"),
    ]


def cells(page: str) -> dict:
    """(model, suite, metric) -> the delta shown in the forgetting table (None for '–')."""
    section = page[page.index('<section id="forgetting"') : page.index("</section>")]
    found = {}
    for model, row in re.findall(r'<tr class="forgetting-row" data-model="([^"]*)">(.*?)</tr>', section, re.S):
        for suite, metric, rest in re.findall(r'<td [^>]*data-suite="([^"]*)" data-metric="([^"]*)"([^>]*)>', row):
            value = re.search(r'data-value="([^"]*)"', rest)
            found[html.unescape(model), html.unescape(suite), metric] = float(value.group(1)) if value else None
    return found


def deltas(run) -> dict:
    return json.loads((run / "results.json").read_text(encoding="utf-8"))["deltas"]


def test_gained_here_beside_changed_there(three_suites, tmp_path):
    target, other, third = three_suites
    code, out, err = harness("report", *three_suites, "-o", tmp_path / "r.html", "--md", tmp_path / "r.md")
    assert code == 0, err
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert page.index('id="forgetting"') < page.index('id="suite-1"')
    expected = {}
    for model in ("ko-qa", "ko-qa-v2"):
        for metric in ("exact_match", "f1"):  # the target: every metric
            expected[model, "target", metric] = deltas(target)[model][metric]["value"]
        expected[model, "other", "exact_match"] = deltas(other)[model]["exact_match"]["value"]  # the headline
    expected["ko-qa", "third", "exact_match"] = deltas(third)["ko-qa"]["exact_match"]["value"]
    expected["ko-qa-v2", "third", "exact_match"] = None  # not evaluated there
    assert cells(page) == pytest.approx(expected)
    md = (tmp_path / "r.md").read_text(encoding="utf-8")
    row = next(line for line in md.splitlines() if line.startswith("| **ko-qa** |"))
    shown = [float(v) for v in re.findall(r"(?<![\[,] )(?<!\[)[+-]\d+\.\d\d(?= \[)", row)]
    want = [expected["ko-qa", s, m] for s, m in [("target", "exact_match"), ("target", "f1"), ("other", "exact_match")]]
    assert shown == pytest.approx([*want, expected["ko-qa", "third", "exact_match"]], abs=0.005)
    assert "forgetting: gained on target (target)" in out


def test_target_names_the_suite_gained_on(three_suites, tmp_path):
    code, _, err = harness("report", *three_suites, "--target", "other", "-o", tmp_path / "r.html")
    assert code == 0, err
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert re.search(r"<h2>Did it forget\? <span class=\"muted\">· gained on other,", page)
    assert ("ko-qa", "other", "f1") in cells(page) and ("ko-qa", "target", "f1") not in cells(page)
    code, _, err = harness("report", *three_suites, "--target", "nope", "-o", tmp_path / "r.html")
    lines = message_lines(err)
    assert code == 2 and len(lines) == 1 and "--target nope: no such suite" in lines[0], err


def test_no_summary_when_the_bases_differ(three_suites, tmp_path):
    other = three_suites[1] / "results.json"
    results = json.loads(other.read_text(encoding="utf-8"))
    results["models"][0]["ref"] = "another/base"
    other.write_text(json.dumps(results), encoding="utf-8")
    code, _, err = harness("report", *three_suites, "-o", tmp_path / "r.html", "--md", tmp_path / "r.md")
    assert code == 0, err
    assert "no forgetting summary: the base of suite other is not that of target" in err
    assert 'id="forgetting"' not in (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "Did it forget" not in (tmp_path / "r.md").read_text(encoding="utf-8")


def test_suite_and_adapter_names_are_escaped(tmp_path, write_qa_run, make_samples):
    samples, outputs = make_samples(6)
    outputs = {"base": outputs["base"], EVIL: outputs["ko-qa"]}
    runs = [
        write_qa_run(tmp_path / "runs", "a", samples, outputs, suite=f"t{EVIL}"),
        write_qa_run(tmp_path / "runs", "b", samples, outputs, suite=f"o{EVIL}"),
    ]
    code, _, err = harness("report", *runs, "-o", tmp_path / "r.html", "--md", tmp_path / "r.md")
    assert code == 0, err
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<img" not in page
    assert (EVIL, f"o{EVIL}", "exact_match") in cells(page)
    md = (tmp_path / "r.md").read_text(encoding="utf-8")
    assert "<img" not in md
    forgetting = md[md.index("## Did it forget?") : md.index("\n## ", md.index("## Did it forget?") + 1)]
    assert '&lt;img src=x onerror="alert\\(1\\)"&gt;\\|\\*' in forgetting
