"""`harness report` on run directories built in-process (see conftest.py): page structure
against a pinned golden file, merging, Markdown, errors, escaping, layering and scale."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.report import load_report, render_html, render_markdown, script_json

GOLDEN = Path(__file__).with_name("golden_structure.json")


def page_structure(html: str, data: dict) -> dict:
    return {
        "sections": re.findall(r'<section id="([\w-]+)" data-section=', html),
        "models": len(re.findall(r'<tr class="model-row"', html)),
        "delta_rows": len(re.findall(r'<tr class="delta-row"', html)),
        "samples": len(data["samples"]),
        "metric_labels": re.findall(r'<th data-metric="([^"]+)"', html),
        "charts": len(re.findall(r'<figure class="chart"', html)),
        "curves": len(re.findall(r'<figure class="chart curve"', html)),
        "histograms": len(re.findall(r'<figure class="chart hist"', html)),
        "data_models": [m["name"] for m in data["models"]],
        "kind": data["kind"],
    }


def test_page_structure_matches_golden(qa_run, run_cli, read_page):
    code, out, err = run_cli(["report", qa_run, "--html", "-o", "out/page.html"])
    assert code == 0, err
    assert "report: out/page.html" in out and "Δ vs base" in out and "exact_match" in out
    html, data = read_page("out/page.html")
    got = page_structure(html, data)
    if os.environ.get("HARNESS_BLESS") == "1":
        GOLDEN.write_text(json.dumps(got, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    assert got == json.loads(GOLDEN.read_text(encoding="utf-8")), "re-bless with HARNESS_BLESS=1 if intended"


def test_page_content(qa_run, read_page, tmp_path):
    report = load_report([qa_run])
    path = tmp_path / "p.html"
    path.write_text(render_html(report), encoding="utf-8")
    html, data = read_page(path)
    # self-contained: no external references of any kind
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', html)
    assert "<link" not in html and "@import" not in html
    assert (
        "korquad-sample-aaaa111111" in html
        and "a2a9d7d670a41c763881be15e84137593b9f3d699b836b736e36d3a7a2df8009" in html
    )
    assert "adapters/ko-qa" in html and "final loss 5.900" in html and "best eval_loss 7.400" in html
    assert 'data-series="loss"' in html and 'data-series="eval_loss"' in html
    # metrics table numbers equal results.json, improved marks follow the deltas
    results = json.loads((qa_run / "results.json").read_text())
    for model, metrics in results["metrics"].items():  # noqa: B007
        for entry in metrics.values():
            assert f"{entry['value']:.2f}" in html
    improved = sum(d["improved"] for m in results["deltas"].values() for d in m.values())
    assert html.count('<td class="improved" data-state="improved">') == improved
    # sample data: prompts rebuilt from the string table equal the records
    recs = [json.loads(line) for line in (qa_run / "records" / "base.jsonl").read_text().splitlines()]
    for sample, rec in zip(data["samples"], recs):
        assert "\n\n".join(data["strings"][i] for i in sample["p"]) == rec["prompt"]
        assert sample["r"] == rec["references"]
    assert data["metrics"] == ["exact_match", "f1"] and data["metrics"][data["primary"]] == "f1"
    assert len(data["strings"]) < len(data["samples"])  # shared contexts are stored once


def test_markdown_has_metrics_with_deltas(qa_run, run_cli):
    code, out, err = run_cli(["report", qa_run, "--md", "summary.md"])
    assert code == 0, err
    assert "report: summary.md" in out
    md = Path("summary.md").read_text(encoding="utf-8")
    assert "| model | exact_match ↑ | f1 ↑ |" in md
    assert re.search(r"\| Δ ko-qa vs base \| \+\d+\.\d\d \[\+\d+\.\d\d, \+\d+\.\d\d\] n=\d+ ▲ \|", md)
    assert "| **base** |" in md and "Δ ko-qa-v2 vs base" in md
    assert not Path("reports").exists() or not list(Path("reports").glob("*.html"))  # --md alone: no page


def test_default_paths_and_latest_run(qa_run, run_cli, monkeypatch):
    monkeypatch.chdir(qa_run.parent.parent)  # contains runs/
    code, out, err = run_cli(["report", "--html", "--md"])
    assert code == 0, err
    assert "report: reports/korquad-sample-aaaa111111.html" in out
    assert "report: reports/korquad-sample-aaaa111111.md" in out
    assert Path("reports/korquad-sample-aaaa111111.html").is_file()


def test_merge_runs_of_same_suite(tmp_path, write_qa_run, make_samples, run_cli, read_page):
    samples, outputs = make_samples(12)
    a = write_qa_run(
        tmp_path / "runs", "korquad-sample-r1", samples, {"base": outputs["base"], "ko-qa": outputs["ko-qa"]}
    )
    b = write_qa_run(
        tmp_path / "runs", "korquad-sample-r2", samples, {"base": outputs["base"], "v2": outputs["ko-qa-v2"]}
    )
    code, out, err = run_cli(["report", a, b, "-o", "m.html"])
    assert code == 0, err
    _html, data = read_page("m.html")
    assert [m["name"] for m in data["models"]] == ["base@korquad-sample-r1", "ko-qa", "base@korquad-sample-r2", "v2"]
    assert all(len(s["o"]) == 4 for s in data["samples"]) and len(data["samples"]) == 12
    assert "base@korquad-sample-r2" in out


def test_error_missing_run_dir(run_cli):
    code, _out, err = run_cli(["report", "no/such/run"])
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("harness report: error: no/such/run: no such run directory")


def test_error_no_runs_yet(run_cli):
    code, _out, err = run_cli(["report", "--runs-root", "empty"])
    assert code == 2 and err.count("\n") == 1 and "no finished run found" in err


def test_error_unreadable_results(qa_run, run_cli):
    (qa_run / "results.json").write_text("{not json", encoding="utf-8")
    code, _out, err = run_cli(["report", qa_run])
    assert code == 2 and err.count("\n") == 1 and "results.json: unreadable" in err


def test_torn_last_record_is_left_out_with_a_note(qa_run, run_cli):
    """A run stopped while writing its last record (killed, disk full) still reports what it finished."""
    with (qa_run / "records" / "ko-qa.jsonl").open("a") as fh:
        fh.write('{"id": "torn')
    code, _out, err = run_cli(["report", qa_run])
    assert code == 0, err
    assert err.count("\n") == 1 and "ko-qa.jsonl line" in err and "incomplete" in err and "left out" in err


def test_error_unreadable_record_inside_the_file(qa_run, run_cli):
    path = qa_run / "records" / "ko-qa.jsonl"
    lines = path.read_text(encoding="utf-8").split("\n")
    path.write_text("\n".join([lines[0], '{"id": "torn', *lines[1:]]), encoding="utf-8")
    code, _out, err = run_cli(["report", qa_run])
    assert code == 2 and err.count("\n") == 1 and "ko-qa.jsonl line 2: not a JSON record" in err


def test_different_suites_make_one_page_with_a_section_each(tmp_path, write_qa_run, make_samples, run_cli):
    samples, outputs = make_samples(6)
    a = write_qa_run(tmp_path / "runs", "a", samples, outputs)
    b = write_qa_run(tmp_path / "runs", "b", samples, outputs, suite="squad-sample-en")
    code, _out, err = run_cli(["report", a, b, "-o", tmp_path / "r.html"])
    assert code == 0, err
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert 'data-suite="korquad-sample"' in page and 'data-suite="squad-sample-en"' in page


def test_error_different_datasets(tmp_path, write_qa_run, make_samples, run_cli):
    samples, outputs = make_samples(6)
    a = write_qa_run(tmp_path / "runs", "a", samples, outputs)
    b = write_qa_run(tmp_path / "runs", "b", samples, outputs, sha="0" * 64)
    code, _out, err = run_cli(["report", a, b])
    assert code == 2 and err.count("\n") == 1 and "dataset sha256" in err


def test_subprocess_error_is_one_line(run_subprocess):
    proc = run_subprocess(["report", "missing-run"])
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "missing-run" in proc.stderr


PAYLOADS = [
    "<script>window.__pwned=1</script>",
    '<img src=x onerror="window.__pwned=1">',
    "</textarea>",
    "</script><script>window.__pwned=1</script>",
    "javascript:alert(1)",
]


def test_script_json_cannot_close_its_block():
    text = str(script_json({"a": "</script><!-- \u2028\u2029 & <b>"}))
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text and "\u2029" not in text
    assert json.loads(text) == {"a": "</script><!-- \u2028\u2029 & <b>"}


def test_payloads_are_escaped_in_html(tmp_path, write_qa_run, make_samples):
    samples, outputs = make_samples(len(PAYLOADS))
    for i, p in enumerate(PAYLOADS):
        samples[i]["prompt"] = f"### 문맥:\n{p}\n\n### 질문:\n{p}?\n\n### 답변:\n"
        samples[i]["references"] = [p]
        outputs["ko-qa"][i] = p
    run = write_qa_run(tmp_path / "runs", "korquad-sample-xss", samples, outputs)
    html = render_html(load_report([run]))
    assert html.count("<script") == 2  # the data block and the page's own script, nothing else
    assert "onerror" not in html.split('id="data">', 1)[0]
    assert "window.__pwned" not in html.replace("\\u003cscript\\u003ewindow.__pwned", "").replace(
        'onerror=\\"window.__pwned', ""
    ).replace("\\u003e\\u003cscript\\u003ewindow.__pwned", "")


def test_perplexity_run_has_document_view(tmp_path, read_page):
    from harness.metrics.aggregate import aggregate
    from harness.runs.store import RunDir
    from harness.tasks.perplexity import PerplexityTask

    scorers = PerplexityTask().scorers(type("S", (), {"metrics": [], "filters": []})(), [])
    run = RunDir(tmp_path / "runs" / "perplexity-ko-x").create()
    records = {}
    for model, scale in (("base", 2.0), ("tiny", 2.3)):
        recs = [
            {
                "id": f"d{i}",
                "prompt": f"문서 {i} " * 40,
                "references": [],
                "nll": scale * (50 + i),
                "tokens": 50 + i,
                "bytes": 3 * (50 + i),
                "key": f"{model}{i}",
            }
            for i in range(8)
        ]
        run.write_records(model, recs)
        records[model] = recs
    results = aggregate(records, scorers, "base", 100, 0, 0.95)
    results.update(
        {
            "suite": "perplexity-ko",
            "task": "perplexity",
            "run_id": "perplexity-ko-x",
            "n_samples": 8,
            "dataset": {"source": "builtin:perplexity_ko", "sha256": "f" * 64},
            "models": [
                {"name": "base", "kind": "base", "ref": "tiny:llama-ko"},
                {"name": "tiny", "kind": "adapter", "path": "a", "sha256": "0" * 64},
            ],
        }
    )
    run.write_json("results.json", results)
    path = tmp_path / "ppl.html"
    path.write_text(render_html(load_report([run.path])), encoding="utf-8")
    html, data = read_page(path)
    assert data["kind"] == "perplexity" and data["metrics"] == [] and len(data["samples"]) == 8
    assert data["samples"][0]["nll"] == pytest.approx([100.0, 115.0]) and data["samples"][0]["tok"] == [50, 50]
    assert re.findall(r'<th data-metric="([^"]+)"', html) == ["perplexity", "bits_per_byte"]
    assert "Documents" in html and '<select id="filter">' not in html
    assert "▼" in render_markdown(load_report([run.path]))  # higher perplexity is a regression
    assert math.isfinite(results["metrics"]["base"]["perplexity"]["value"])


def test_report_modules_do_not_import_torch():
    code = (
        "import harness.commands.report, harness.report, harness.report.render, harness.report.load, sys; "
        "bad = [m for m in ('torch', 'transformers', 'peft', 'numpy') if m in sys.modules]; "
        "assert not bad, bad"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


N_SCALE = 5774


def build_scale_run(root: Path, write_qa_run) -> Path:
    """5,774 samples × 3 models, each prompt ~1,000 Hangul characters and unique (worst case)."""
    import random

    rng = random.Random(0)
    syllables = [chr(0xAC00 + rng.randrange(11172)) for _ in range(400)]
    samples, outputs = [], {"base": [], "ko-qa": [], "ko-qa-v2": []}
    for i in range(N_SCALE):
        context = "".join(rng.choice(syllables) + (" " if rng.random() < 0.25 else "") for _ in range(900))
        answer = "".join(rng.choice(syllables) for _ in range(4))
        samples.append(
            {
                "id": f"k{i:05d}",
                "prompt": f"### 문맥:\n{context}\n\n### 질문:\n{answer}은 무엇인가?\n\n### 답변:\n",
                "references": [answer, answer + "이다"],
            }
        )
        outputs["base"].append("".join(rng.choice(syllables) for _ in range(12)))
        outputs["ko-qa"].append(answer if rng.random() < 0.5 else answer[:2] + "의 일부")
        outputs["ko-qa-v2"].append(answer + " 입니다" if rng.random() < 0.4 else "모르겠습니다")
    return write_qa_run(root, "korquad-scale", samples, outputs, resamples=100)


def test_scale_5774_samples_3_models(tmp_path, write_qa_run, read_page):
    run = build_scale_run(tmp_path / "runs", write_qa_run)
    start = time.perf_counter()
    report = load_report([run])
    html = render_html(report)
    elapsed = time.perf_counter() - start
    size = len(html.encode("utf-8"))
    path = tmp_path / "scale.html"
    path.write_text(html, encoding="utf-8")
    _, data = read_page(path)
    assert len(data["samples"]) == N_SCALE and len(data["models"]) == 3
    assert size < 25 * 1024 * 1024, f"{size / 2**20:.1f} MiB"
    assert elapsed < 60, f"rendering took {elapsed:.1f} s"
    assert html.count('class="sample"') == 0  # rows are built lazily by the page's script
