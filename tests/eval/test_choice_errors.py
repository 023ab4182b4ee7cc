"""The choice task fed the wrong thing: one line naming the example and field, exit 2, before the model
loads where the dataset alone shows it; odd but valid choices are scored."""

from __future__ import annotations

import json
import math

import pytest
from support import message_lines

from harness.metrics.choice import accuracy, macro_f1, prediction

ROWS = [
    {"id": "a", "q": "하늘은 무슨 색인가?", "options": ["파랑", "초록"], "label": 0},
    {"id": "b", "q": "1 더하기 1은?", "options": ["2", "3"], "label": 0},
    {"id": "c", "q": "고양이는 무엇인가?", "options": ["동물", "식물"], "label": 0},
]


def _suite(tmp_path, rows=ROWS, **choice) -> str:
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    suite = {
        "name": "choice_errors",
        "task": "choice",
        "dataset": {"path": str(data)},
        "choice": {"context": "질문: {{ q }}\n답:", "choices": "options", "gold": "label", **choice},
        "bootstrap": {"resamples": 20},
    }
    path = tmp_path / "suite.yaml"
    path.write_text(json.dumps(suite, ensure_ascii=False), encoding="utf-8")
    return str(path)


def _one_line(run_cli, args) -> str:
    code, _out, err = run_cli(["eval", *args])
    lines = message_lines(err)
    assert code == 2 and "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("harness eval: error: "), err
    return lines[0]


@pytest.mark.parametrize(
    "choice,needles",
    [
        ({"gold": "label + 5"}, ["example 'a'", "choice.gold", "5"]),
        ({"gold": "'보라'"}, ["example 'a'", "choice.gold", "보라"]),
        ({"choices": "q"}, ["example 'a'", "choice.choices", "list of texts"]),
        ({"choices": "missing_column"}, ["example 'a'", "choice.choices", "missing_column"]),
        ({"context": "{{ q "}, ["choice.context", "syntax"]),
        ({"gold": "label +"}, ["choice.gold", "syntax"]),
    ],
    ids=["gold out of range", "gold not a choice", "choices not a list", "unknown column", "bad template", "bad expr"],
)
def test_bad_choice_fields_are_one_line(choice, needles, tmp_path, run_cli):
    line = _one_line(run_cli, [_suite(tmp_path, **choice), "--out", str(tmp_path / "runs")])
    for needle in needles:
        assert needle in line, line
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.jsonl"))


def test_unknown_metric_and_filters_are_refused(tmp_path, run_cli):
    suite = _suite(tmp_path)
    line = _one_line(run_cli, [suite, "--set", "metrics=[rouge1]", "--out", str(tmp_path / "runs")])
    assert "metrics[0]" in line and "acc, acc_norm, f1" in line
    line = _one_line(run_cli, [suite, "--set", "filters=[{function: strip}]", "--out", str(tmp_path / "runs")])
    assert "filters" in line


def test_fewshot_larger_than_the_pool_is_one_line(tmp_path, run_cli):
    line = _one_line(run_cli, [_suite(tmp_path), "--set", "prompt.fewshot.k=3", "--out", str(tmp_path / "runs")])
    assert "prompt.fewshot.k" in line and "lower k" in line


def test_odd_choices_are_scored_and_stored(tmp_path, run_cli):
    """An empty choice, markup, control characters and a long choice are valid input."""
    rows = [
        {
            "id": "x",
            "q": "<b>굵게</b> & \u202e거꾸로",
            "options": ["", "<script>alert(1)</script>", "가" * 300],
            "label": 1,
        },
        {"id": "y", "q": "", "options": ["\x00널", "\U0001f600 이모지"], "label": [0, 1]},
    ]
    out = tmp_path / "runs"
    code, _out, err = run_cli(["eval", _suite(tmp_path, rows=rows), "--out", str(out), "--run-id", "odd"])
    assert code == 0, err
    records = [json.loads(line) for line in (out / "odd" / "records" / "base.jsonl").read_text("utf-8").splitlines()]
    assert [r["choices"] for r in records] == [row["options"] for row in rows]
    assert records[1]["gold"] == [0, 1] and records[1]["metrics"]["acc"] == 100.0  # either choice is right
    for record in records:
        assert all(math.isfinite(x) for x in record["loglikelihoods"])
        assert len(record["loglikelihoods"]) == len(record["choices"])


def test_scores_follow_numpy_argmax_on_degenerate_log_likelihoods():
    """lm-evaluation-harness takes numpy's argmax of lls and of lls / len(choice): the same picks here."""
    import numpy as np

    cases = [
        ([-1.0, -1.0], ["a", "b"]),  # a tie: the first
        ([-2.0, -3.0], ["", "abc"]),  # an empty choice: -inf after normalising
        ([0.0, -3.0], ["", "abc"]),  # 0/0: NaN, which numpy's argmax picks
        ([-math.inf, -5.0], ["a", "b"]),
    ]
    for lls, choices in cases:
        with np.errstate(divide="ignore", invalid="ignore"):
            expected_norm = int(np.argmax(np.array(lls) / np.array([float(len(c)) for c in choices])))
        assert prediction(lls, choices) == int(np.argmax(lls))
        assert prediction(lls, choices, normalized=True) == expected_norm
    assert math.isnan(accuracy([math.nan, -1.0], ["a", "b"], [1]))
    assert math.isnan(macro_f1([0, 1], [0, None]))


def test_macro_f1_equals_scikit_learn():
    sklearn = pytest.importorskip("sklearn.metrics", reason="scikit-learn comes with the test extra's lm-eval")
    golds = [0, 1, 1, 2, 0, 2, 2, 1]
    for preds in ([0, 1, 1, 2, 0, 2, 2, 1], [1, 1, 0, 2, 2, 2, 0, 0], [3, 3, 3, 3, 3, 3, 3, 3]):
        assert macro_f1(golds, preds) == pytest.approx(100 * sklearn.f1_score(golds, preds, average="macro"))
