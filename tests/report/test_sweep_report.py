"""The report's sweep plots and table on a run built in-process (see conftest.py): a 2-field grid
gives one line per value of the second field, the best point of each metric is marked, the base is
the reference line, and point names and values (the user's text) stay text in HTML and Markdown."""

from __future__ import annotations

import json
import re

from harness.report import load_report, render_html, render_markdown

HOSTILE = "<img src=x onerror=alert(1)>"
# point → how many of the 12 answers it gets right: every point scores differently
CORRECT = {"r=8,alpha=a": 2, "r=4,alpha=a": 5, "r=8,alpha=16": 9, "r=4,alpha=16": 3}


def sweep_run(tmp_path, write_qa_run, make_samples):
    samples, outputs = make_samples(12)
    outputs = {"base": outputs["base"]}
    values = {}
    for name, right in CORRECT.items():
        outputs[name] = [s["references"][0] if i < right else "모름" for i, s in enumerate(samples)]
        r, alpha = (part.split("=")[1] for part in name.split(","))
        values[name] = {"lora.r": int(r), "lora.alpha": HOSTILE if alpha == "a" else int(alpha)}
    run = write_qa_run(tmp_path / "runs", "korquad-sample-sweep000001", samples, outputs)
    results = json.loads((run / "results.json").read_text(encoding="utf-8"))
    results["sweep"] = {
        "dir": "adapters/sw",
        "fields": {"lora.r": [8, 4], "lora.alpha": [HOSTILE, 16]},
        "points": values,
    }
    (run / "results.json").write_text(json.dumps(results), encoding="utf-8")
    return run, results


def test_grid_gives_one_line_per_second_field_value_with_the_best_marked(tmp_path, write_qa_run, make_samples):
    run, results = sweep_run(tmp_path, write_qa_run, make_samples)
    html = render_html(load_report([run]))
    section = html[html.index('id="sweep-charts"') : html.index("</table>", html.index('id="sweep-table"'))]
    figures = section.split('<figure class="chart sweep"')[1:]
    assert len(figures) == len(results["metric_info"]) == 2
    for figure, label in zip(figures, results["metric_info"]):
        assert figure.count("<polyline") == 2  # alpha: two values, two lines
        scores = {name: results["metrics"][name][label]["value"] for name in CORRECT}
        assert re.findall(r'class="point best" data-point="([^"]+)"', figure) == [max(scores, key=scores.get)]
        assert f'data-base="{results["metrics"]["base"][label]["value"]}"' in figure
        # x: the rank's values in numeric order, whatever order the sweep gave them in
        ticks = re.findall(r'text-anchor="middle">(\d+)</text>', figure)
        assert ticks == ["4", "8"]
    assert section.count("★") >= 2 + 2  # on each chart and in the table


def test_point_names_and_values_stay_text(tmp_path, write_qa_run, make_samples):
    run, _results = sweep_run(tmp_path, write_qa_run, make_samples)
    report = load_report([run])
    html, md = render_html(report), render_markdown(report)
    assert HOSTILE not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<img" not in md and "Sweep (★ best point)" in md
    rows = [line for line in md.splitlines() if line.startswith("| <code>r=")]
    assert len(rows) == 4 and sum("★" in row for row in rows) >= 1


def test_no_sweep_no_sweep_section(qa_run):
    report = load_report([qa_run])
    assert 'id="sweep' not in render_html(report) and "Sweep" not in render_markdown(report)
