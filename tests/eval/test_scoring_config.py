"""Metric and answer-extraction settings through `harness eval`: a mistake in them is one line (exit 2)
before any model loads (the suite's base is an empty directory that would fail to load, and no run
directory is made), and a suite with `contains`, a user metric and filters scores the records'
filtered outputs."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from support import message_lines

QA = {
    "name": "scoring",
    "task": "qa",
    "dataset": {"path": "builtin:korquad_sample", "limit": 3},
    "generation": {"max_new_tokens": 4},
    "batch_size": 3,
}
USER_METRIC = "def answer_length(prediction, references):\n    return float(len(prediction))\n"


def _suite(path, **fields) -> str:
    path.write_text(json.dumps({**QA, **fields}, ensure_ascii=False), encoding="utf-8")  # JSON is YAML
    return str(path)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"metrics": ["exact_match", "contians"]},
            ["metrics[1]", "'contians'", "did you mean 'contains'", "known metrics"],
        ),
        ({"metrics": [{"name": "contains", "tokenizer": "mecab"}]}, ["metrics[0]", "it takes no options"]),
        ({"metrics": ["my_metrics.py:nope"]}, ["metrics[0]", "defines no function 'nope'"]),
        ({"metrics": ["absent.py:f"]}, ["metrics[0]", "no file absent.py"]),
        ({"filters": [{"function": "regex", "pattern": "답: ("}]}, ["filters", "not a valid regular expression"]),
        ({"filters": [{"function": "regex", "pattern": "답", "group": 1}]}, ["filters", "has 0 group(s)"]),
        ({"filters": [{"function": "frist_line"}]}, ["filters", "function"]),
    ],
)
def test_scoring_mistakes_stop_the_eval_before_the_model_loads(run_cli, workdir, fields, expected):
    (workdir / "my_metrics.py").write_text(USER_METRIC, encoding="utf-8")
    (workdir / "empty-base").mkdir()
    suite = _suite(workdir / "s.yaml", models={"base": str(workdir / "empty-base")}, **fields)
    code, _out, err = run_cli(["eval", suite])
    lines = message_lines(err)
    assert code == 2 and len(lines) == 1, err
    for text in ["s.yaml", *expected]:
        assert text in lines[0], lines[0]
    assert not (workdir / "runs").exists()


def plain_filters(output: str) -> str:
    match = re.search(r"(\S+)", output)
    return (match.group(1) if match else "없음").lower()


def test_contains_user_metric_and_filters_in_one_eval(run_cli, workdir):
    (workdir / "my_metrics.py").write_text(USER_METRIC, encoding="utf-8")
    digest = hashlib.sha256(USER_METRIC.encode()).hexdigest()
    filters = [{"function": "regex", "pattern": r"(\S+)", "group": 1, "fallback": "없음"}, {"function": "lowercase"}]
    suite = _suite(workdir / "s.yaml", metrics=["contains", "my_metrics.py:answer_length"], filters=filters)
    code, _out, err = run_cli(["eval", suite, "--out", workdir / "runs"])
    assert code == 0, err
    (run,) = (workdir / "runs").iterdir()
    results = json.loads((run / "results.json").read_text(encoding="utf-8"))
    records = [json.loads(line) for line in (run / "records" / "base.jsonl").read_text(encoding="utf-8").splitlines()]
    for record in records:
        assert record["prediction"] == plain_filters(record["output"])
        assert record["metrics"]["my_metrics.py:answer_length"] == len(record["prediction"])
    contains = results["metrics"]["base"]["contains"]
    assert contains["method"] == "exact"  # every value is 0 or 100: Clopper-Pearson, as exact match
    assert results["metric_info"]["my_metrics.py:answer_length"]["version"].endswith(f"sha256 {digest}")
