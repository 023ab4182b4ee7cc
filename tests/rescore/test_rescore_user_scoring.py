"""A user's metric file and answer filters through `harness rescore`: the per-sample values are those
of the user's function on the filtered raw outputs (recomputed here with `re`), the file's sha256
is in the results, and an edit to the file after the eval is noted."""

from __future__ import annotations

import hashlib
import json
import re

from rescore_helpers import write_summarization_run
from support import read_json

METRIC_FILE = """
def answer_length(prediction, references):
    return float(len(prediction))
"""


def _write_metric(path, body=METRIC_FILE):
    path.write_text(body, encoding="utf-8")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_user_metric_and_filters_rescore_from_raw_outputs(workdir, run_cli, read_page):
    digest = _write_metric(workdir / "my_metrics.py")
    spec = "my_metrics.py:answer_length"
    run = write_summarization_run(workdir / "runs", suite_overrides={"bootstrap.resamples": 200, "metrics": [spec]})
    eval_results = read_json(run / "results.json")
    assert eval_results["metric_info"][spec]["version"].endswith(f"sha256 {digest}")
    assert {"low", "high"} <= set(eval_results["metrics"]["base"][spec])
    assert spec in eval_results["deltas"]["ko-sum"]

    code, _out, err = run_cli(["rescore", run, "--set", "filters=[{function: regex, pattern: '(\\S+)', group: 1}]"])
    assert code == 0, err
    rescored = read_json(next(run.glob("results-rescored-*.json")))
    for column in ("base", "ko-sum"):
        for line in (run / "records" / f"{column}.jsonl").read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            first_word = re.search(r"(\S+)", record["output"]).group(1)
            assert rescored["sample_metrics"][column][record["id"]][spec] == len(first_word)
            assert rescored["sample_predictions"][column][record["id"]] == first_word
    assert rescored["rescored"]["filters"][0]["pattern"] == "(\\S+)"

    changed = _write_metric(workdir / "my_metrics.py", METRIC_FILE.replace("len(prediction)", "len(prediction) * 2"))
    code, _out, err = run_cli(["rescore", run, "-o", "results-edited.json"])
    assert code == 0, err
    edited = read_json(run / "results-edited.json")
    assert edited["metric_info"][spec]["version"].endswith(f"sha256 {changed}")
    assert any(spec in note and digest in note for note in edited["rescored"]["notes"])
    code, _out, err = run_cli(["report", run, "--results", "results-edited.json", "-o", "page.html"])
    assert code == 0, err
    _html, data = read_page("page.html")
    assert spec in data["metrics"]


def test_bad_filter_and_missing_function_are_one_line(workdir, run_cli, sum_run):
    _write_metric(workdir / "my_metrics.py")
    for args, expected in (
        (["--set", "filters=[{function: regex, pattern: '(unclosed'}]"], "not a valid regular expression"),
        (["--metric", "my_metrics.py:nope"], "defines no function 'nope'"),
        (["--metric", "missing.py:f"], "no file missing.py"),
    ):
        code, _out, err = run_cli(["rescore", sum_run, *args])
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and expected in lines[0], err
