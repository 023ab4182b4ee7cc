"""`harness eval` of a tiny choice suite with subjects and categories on tiny:llama-ko: results.json's
breakdown against a plain computation on the records, the terminal's category table, and the
report of the run (breakdown tables, each choice's log-likelihood in the sample view)."""

from __future__ import annotations

import json
import statistics

ROWS = [
    ("서울은 대한민국의 수도인가?", 1, "geography"),
    ("고래는 어류인가?", 0, "biology"),
    ("물은 50도에서 끓는가?", 0, "physics"),
    ("부산은 항구 도시인가?", 1, "geography"),
    ("개구리는 양서류인가?", 1, "biology"),
    ("빛은 소리보다 느린가?", 0, "physics"),
    ("한라산은 제주도에 있는가?", 1, "geography"),
    ("나무는 광합성을 하는가?", 1, "biology"),
    ("<b>철</b>은 자석에 붙는가?", 1, "physics"),
]
SUITE = """\
name: choice_breakdown
task: choice
dataset:
  path: rows.jsonl
choice:
  context: "질문: {{question}} 답변:"
  choices: ["아니오", "예"]
  gold: label
  subject: subject
  categories: {geography: HUMSS, biology: STEM, physics: STEM}
metrics: [acc, acc_norm]
bootstrap: {resamples: 50}
"""


def test_eval_writes_the_breakdown_and_the_report_shows_it(workdir, run_cli, harness_cache, read_page):
    rows = [{"id": f"q{i}", "question": q, "label": y, "subject": s} for i, (q, y, s) in enumerate(ROWS)]
    (workdir / "rows.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    (workdir / "suite.yaml").write_text(SUITE)
    code, out, err = run_cli(["eval", "suite.yaml", "--out", "runs"])
    assert code == 0, err
    assert "by category" in out and "HUMSS" in out and "macro over 3 subjects" in out
    (run,) = (workdir / "runs").iterdir()
    results = json.loads((run / "results.json").read_text())
    records = [json.loads(line) for line in (run / "records" / "base.jsonl").read_text().splitlines()]
    b = results["breakdown"]
    assert b["subjects"] == ["biology", "geography", "physics"] and b["categories"] == ["HUMSS", "STEM"]
    col = b["columns"]["base"]
    for label in ("acc", "acc_norm"):
        by = {s: [r["metrics"][label] for r in records if r["subject"] == s] for s in b["subjects"]}
        assert {s: col["subjects"][s][label] for s in by} == {s: statistics.mean(v) for s, v in by.items()}
        stem = by["biology"] + by["physics"]
        assert col["categories"]["STEM"][label]["value"] == statistics.mean(stem)
        assert col["macro_subjects"][label]["value"] == statistics.mean(statistics.mean(v) for v in by.values())
        assert col["macro_categories"][label]["value"] == statistics.mean(
            [statistics.mean(stem), statistics.mean(by["geography"])]
        )
    code, out, err = run_cli(["report", str(run), "--md", "-o", "page.html"])
    assert code == 0, err
    html, data = read_page(workdir / "page.html")
    assert 'id="breakdown-table"' in html and 'data-subject="geography"' in html
    assert "&lt;b&gt;철&lt;/b&gt;" in html or "\\u003cb\\u003e철" in html
    sample = data["samples"][0]
    assert sample["c"] == ["아니오", "예"] and sample["g"] == [records[0]["gold"][0]]
    assert sample["ll"][0] == records[0]["loglikelihoods"] and sample["sub"] == "geography"
