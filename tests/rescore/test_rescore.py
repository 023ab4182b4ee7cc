"""`harness rescore RUN_DIR`: another metric setting on the records already on disk, no model."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from harness.metrics import build_metric
from harness.runs.rescore import apply_set, parse_metric_option


def digests(run: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted([*run.glob("records/*"), run / "results.json", run / "config.json"])
    }


def test_same_settings_reproduce_the_eval_numbers(sum_run, run_cli):
    code, _out, err = run_cli(["rescore", sum_run, "-o", "results-same.json"])
    assert code == 0, err
    old = json.loads((sum_run / "results.json").read_text(encoding="utf-8"))
    new = json.loads((sum_run / "results-same.json").read_text(encoding="utf-8"))
    assert new["metrics"] == old["metrics"] and new["deltas"] == old["deltas"]
    assert new["metric_info"] == old["metric_info"]
    assert new["rescored"]["from"] == "results.json" and new["dataset"] == old["dataset"]


def test_other_tokenizer_changes_only_rouge_and_leaves_the_run_intact(sum_run, run_cli):
    before = digests(sum_run)
    code, out, err = run_cli(["rescore", sum_run, "--set", "metrics.rouge.tokenizer=whitespace"])
    assert code == 0, err
    assert digests(sum_run) == before  # records, results.json and config.json: byte for byte
    written = list(sum_run.glob("results-rescored-*.json"))
    assert len(written) == 1 and f"results: {written[0]}" in out
    assert "rouge1[whitespace]" in out and "rougeLsum[whitespace]" in out
    assert (
        "rouge1[whitespace], rouge2[whitespace], rougeL[whitespace], rougeLsum[whitespace]: harness ko-normalize" in out
    )
    old = json.loads((sum_run / "results.json").read_text(encoding="utf-8"))
    new = json.loads(written[0].read_text(encoding="utf-8"))
    assert list(new["metric_info"]) == [
        "rouge1[whitespace]",
        "rouge2[whitespace]",
        "rougeL[whitespace]",
        "rougeLsum[whitespace]",
        "bleu[mecab]",
        "chrf",
    ]
    for model in ("base", "ko-sum"):
        for label in ("bleu[mecab]", "chrf"):
            assert new["metrics"][model][label] == old["metrics"][model][label]
        for kind in ("rouge1", "rouge2", "rougeL"):
            assert (
                new["metrics"][model][f"{kind}[whitespace]"]["value"]
                != old["metrics"][model][f"{kind}[mecab]"]["value"]
            )
    assert new["deltas"]["ko-sum"]["chrf"] == old["deltas"]["ko-sum"]["chrf"]
    # Per-sample values come from the task's scorer, recorded beside the figures.
    records = [
        json.loads(line) for line in (sum_run / "records" / "base.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    metric = build_metric("rouge1", {"tokenizer": "whitespace"})
    for r in records:
        # Full precision: per-sample values are not rounded before they are averaged.
        assert new["sample_metrics"]["base"][r["id"]]["rouge1[whitespace]"] == metric.per_sample(
            r["prediction"], r["references"]
        )
        assert "rouge1[mecab]" in r["metrics"]  # the record itself is untouched
    # The same settings give the same file name.
    code, _out2, _ = run_cli(["rescore", sum_run, "--set", "metrics.rouge.tokenizer=whitespace"])
    assert code == 0 and len(list(sum_run.glob("results-rescored-*.json"))) == 1


def test_metric_list_and_competition_scorer(sum_run, run_cli):
    code, _out, err = run_cli(
        [
            "rescore",
            sum_run,
            "--metric",
            "rouge1:scorer=korean_competition",
            "--metric",
            "rougeL:scorer=korean_competition",
            "--metric",
            "chrf",
            "-o",
            "results-nikl.json",
        ]
    )
    assert code == 0, err
    new = json.loads((sum_run / "results-nikl.json").read_text(encoding="utf-8"))
    assert list(new["metric_info"]) == ["rouge1[mecab,korean_competition]", "rougeL[mecab,korean_competition]", "chrf"]
    assert new["metric_info"]["rouge1[mecab,korean_competition]"]["version"].startswith("korean_competition (NIKL")


def test_report_shows_the_rescored_file(sum_run, run_cli, read_page):
    assert run_cli(["rescore", sum_run, "--set", "metrics.rouge.tokenizer=char", "-o", "results-char.json"])[0] == 0
    code, out, err = run_cli(
        ["report", sum_run, "--results", "results-char.json", "-o", "page.html", "--md", "page.md"]
    )
    assert code == 0, err
    html, data = read_page("page.html")
    new = json.loads((sum_run / "results-char.json").read_text(encoding="utf-8"))
    assert "rouge1[char]" in data["metrics"] and "rouge1[mecab]" not in html
    i = data["metrics"].index("rouge1[char]")
    first = data["samples"][0]
    assert first["s"][0][i] == round(new["sample_metrics"]["base"][first["id"]]["rouge1[char]"], 4)
    assert 'id="metric-versions"' in html and "Rescored without generating again: results-char.json" in html
    assert "harness ko-normalize" in Path("page.md").read_text(encoding="utf-8")
    # The default is still the eval's own results.json.
    code, out, err = run_cli(["report", sum_run, "-o", "plain.html"])
    assert code == 0 and "rouge1[mecab]" in out and "python-mecab-ko-dic" in out
    code, out, err = run_cli(["report", sum_run, "--results", "results-nope.json"])
    assert code == 2 and "results-char.json" in err and len(err.strip().splitlines()) == 1


def test_user_errors_exit_2_with_one_line(sum_run, run_cli, tmp_path):
    cases = [
        (["rescore", tmp_path / "no-such-run"], "no such run directory"),
        (["rescore", sum_run, "--set", "generation.max_new_tokens=8"], "run harness eval"),
        (
            ["rescore", sum_run, "--set", "metrics.bertscore.tokenizer=x"],
            "no metric is named or starts with 'bertscore'",
        ),
        (["rescore", sum_run, "--set", "metrics.rouge1.tokenizer=okt"], "unknown tokenizer 'okt'"),
        (["rescore", sum_run, "-o", "results.json"], "stays as it is"),
        (["rescore", sum_run, "-o", "../x.json"], "give a file name"),
        (["rescore", sum_run, "--set", "metrics.rouge.scorer=korean_competition"], "use rougeL"),
    ]
    for argv, message in cases:
        code, _out, err = run_cli(argv)
        assert code == 2, (argv, err)
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in sum_run.glob("results*.json")) == ["results.json"]


def test_set_semantics():
    raw = {"metrics": ["rouge1", {"name": "rougeL", "tokenizer": "mecab"}, "rougeLsum", "chrf"]}
    apply_set(raw, "metrics.rougeL.tokenizer", "char", [])  # an exact name wins over the prefix
    assert raw["metrics"] == ["rouge1", {"name": "rougeL", "tokenizer": "char"}, "rougeLsum", "chrf"]
    apply_set(raw, "metrics.rouge.tokenizer", "kiwi", [])
    assert [m if isinstance(m, str) else m.get("tokenizer") for m in raw["metrics"]] == ["kiwi", "kiwi", "kiwi", "chrf"]
    apply_set(raw, "metrics.*.tokenizer", None, [])  # null removes the option
    assert raw["metrics"] == ["rouge1", "rougeL", "rougeLsum", "chrf"]
    empty: dict = {}
    apply_set(empty, "metrics.rouge2.tokenizer", "char", ["rouge1", "rouge2"])  # the task's defaults
    assert empty["metrics"] == ["rouge1", {"name": "rouge2", "tokenizer": "char"}]
    apply_set(empty, "bootstrap.resamples", 50, [])
    assert empty["bootstrap"] == {"resamples": 50}
    assert parse_metric_option("rouge1") == "rouge1"
    assert parse_metric_option("rouge2:tokenizer=char,scorer=korean_competition") == {
        "name": "rouge2",
        "tokenizer": "char",
        "scorer": "korean_competition",
    }


def test_rescore_does_not_import_torch(sum_run):
    code = (
        "import sys\n"
        "from harness.commands.cli import main\n"
        f"rc = main(['rescore', {str(sum_run)!r}, '--set', 'metrics.rouge.tokenizer=whitespace', '-o', 'results-x.json'])\n"
        "assert rc == 0, rc\n"
        "heavy = [m for m in ('torch', 'transformers', 'peft', 'bitsandbytes') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "print('ok')\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("ok")
