"""`harness eval SUITE SUITE ...`: several suites on one loaded base, each written to its own run directory
exactly as an eval of that suite alone writes it, and the forgetting summary printed at the end.

Real evals on tiny:llama-ko with the session's adapter: KorQuAD-style QA (four samples) and a small
multiple-choice suite (four BoolQ-shaped rows written here)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from eval_helpers import ADAPTER_NAME, SUITES, read_records, read_results
from support import harness, message_lines

QA = SUITES / "korquad_sample.yaml"
FAST = ["--limit", "4", "--set", "generation.max_new_tokens=6", "--set", "bootstrap.resamples=50"]
ROWS = [
    {"paragraph": "서울은 대한민국의 수도이다.", "question": "서울은 수도인가?", "label": 1},
    {"paragraph": "고래는 포유류이다.", "question": "고래는 어류인가?", "label": 0},
    {"paragraph": "물은 100도에서 끓는다.", "question": "물은 50도에서 끓는가?", "label": 0},
    {"paragraph": "한글은 세종대왕이 만들었다.", "question": "한글은 세종대왕이 만들었나?", "label": 1},
    {"paragraph": "지구는 태양 주위를 돈다.", "question": "지구는 태양 주위를 도는가?", "label": 1},
]
CHOICE = """name: boolq-mini
task: choice
dataset:
  path: DATA
choice:
  context: "{{paragraph}} 질문: {{question}} 답변: "
  choices: ["아니오", "예"]
  gold: label
metrics: [acc, acc_norm, f1]
prompt:
  fewshot: {k: 1}
models:
  base: tiny:llama-ko
"""


def choice_suite(directory: Path, text: str = CHOICE) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "boolq.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS), encoding="utf-8"
    )
    path = directory / "boolq_mini.yaml"
    path.write_text(text.replace("DATA", str(directory / "boolq.jsonl")), encoding="utf-8")
    return path


def run_dirs(out: str) -> list[Path]:
    return [Path(p) for p in re.search(r"^runs: (.+)$", out, re.M).group(1).split()]


@pytest.fixture(scope="module")
def several(tmp_path_factory, eval_adapter):
    """(the several-suite eval's stdout, its run directories, each suite's run evaluated alone, the choice
    suite's file); the base loads are counted."""
    import harness.evaluate.run as run_module

    real, loads = run_module.load_base, []

    def counted(*args, **kwargs):  # the real loader, counted
        loads.append(args[0])
        return real(*args, **kwargs)

    root = tmp_path_factory.mktemp("several")
    choice = choice_suite(root / "choice")
    adapter = ["--adapter", f"{ADAPTER_NAME}={eval_adapter}"]
    run_module.load_base = counted
    try:
        code, out, err = harness("eval", QA, choice, *adapter, *FAST, "--out", root / "together")
        assert code == 0, err
        assert loads == ["tiny:llama-ko"]
        alone = []
        for suite in (QA, choice):
            code, single, err = harness("eval", suite, *adapter, *FAST, "--out", root / "alone")
            assert code == 0, err
            alone.append(Path(re.search(r"^run: (.+)$", single, re.M).group(1)))
    finally:
        run_module.load_base = real
    return out, run_dirs(out), alone, choice


def test_each_suite_is_written_as_an_eval_of_it_alone(several):
    out, together, alone, _ = several
    assert [d.name for d in together] == [d.name for d in alone]
    for mine, theirs in zip(together, alone):
        for model in ("base", ADAPTER_NAME):
            assert read_records(mine, model) == read_records(theirs, model)
        a, b = read_results(mine), read_results(theirs)
        for field in ("metrics", "deltas", "metric_info", "dataset", "models", "n_samples", "bootstrap"):
            assert a[field] == b[field], field
        assert (mine / "eval.log").read_text(encoding="utf-8").startswith("=== harness eval")  # each its own log
    assert "loaded once for 2 suites" in out
    assert f"compare: harness report {together[0]} {together[1]} --html" in out


def test_the_forgetting_summary_holds_the_runs_deltas(several):
    out, together, _, _ = several
    qa, choice = (read_results(d) for d in together)
    summary = out[out.index("forgetting: gained on korquad-sample (target)") :].split("\n\n")[0].splitlines()
    assert summary[1].split() == ["Δ", "vs", "base", "metric", ADAPTER_NAME]
    expected = {
        ("korquad-sample (target)", "exact_match"): qa["deltas"][ADAPTER_NAME]["exact_match"],
        ("korquad-sample (target)", "f1"): qa["deltas"][ADAPTER_NAME]["f1"],
        ("boolq-mini", "acc"): choice["deltas"][ADAPTER_NAME]["acc"],  # another suite: its headline metric
    }
    shown = {}
    for line in summary[3:]:
        found = re.match(r"(.+?) +(\w+) +([+-]\d+\.\d\d)( [▲▼])?$", line)
        shown[found[1], found[2]] = (float(found[3]), found[4] or "")
    assert shown.keys() == expected.keys()
    for key, delta in expected.items():
        assert shown[key][0] == pytest.approx(delta["value"], abs=0.005)
        assert shown[key][1] == (" ▲" if delta["improved"] else " ▼" if delta["regressed"] else "")


def test_a_rerun_resumes_every_suite(several, eval_adapter, tmp_path):
    _, together, _, choice = several
    for d in together:
        shutil.copytree(d, tmp_path / "runs" / d.name)
    adapter = ["--adapter", f"{ADAPTER_NAME}={eval_adapter}"]
    code, out, err = harness("eval", QA, choice, *adapter, *FAST, "--out", tmp_path / "runs")
    assert code == 0, err
    assert [d.name for d in run_dirs(out)] == [d.name for d in together]
    for d in together:
        resumed = read_results(tmp_path / "runs" / d.name)
        assert {m: (t["samples"], t["reused"]) for m, t in resumed["throughput"].items()} == {
            "base": (0, 4),
            ADAPTER_NAME: (0, 4),
        }
        assert resumed["metrics"] == read_results(d)["metrics"]


def test_suites_on_different_bases_are_refused(tmp_path):
    other = choice_suite(tmp_path / "choice", CHOICE.replace("tiny:llama-ko", "tiny:t5-ko"))
    code, _, err = harness("eval", QA, other, "--out", tmp_path / "runs")
    lines = message_lines(err)
    assert code == 2 and len(lines) == 1, err
    assert "models.base 'tiny:t5-ko' differs from 'tiny:llama-ko'" in lines[0] and str(other) in lines[0]
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("option", [["--run-id", "x"], ["--data", "other.jsonl"]])
def test_one_suite_options_are_refused_with_several(tmp_path, option):
    code, _, err = harness("eval", QA, choice_suite(tmp_path / "c"), *option, "--out", tmp_path / "runs")
    lines = message_lines(err)
    assert code == 2 and len(lines) == 1 and option[0] in lines[0], err


def test_a_failing_second_suite_keeps_the_first_run(tmp_path, eval_adapter):
    # A choice task generates nothing: a generation grid is refused once the suite's run is planned,
    # after the first suite has finished.
    broken = choice_suite(tmp_path / "choice", CHOICE + "generation_grid: {max_new_tokens: [4, 8]}\n")
    adapter = ["--adapter", f"{ADAPTER_NAME}={eval_adapter}"]
    code, _, err = harness("eval", QA, broken, *adapter, *FAST, "--out", tmp_path / "runs")
    lines = message_lines(err)
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"harness eval: error: suite 2 of 2 ({broken}) failed: ")
    assert "generation_grid" in lines[0]
    finished = [d for d in (tmp_path / "runs").iterdir() if (d / "results.json").is_file()]
    assert [d.name.split("-")[0] for d in finished] == ["korquad"]
    assert f"finished runs kept: {finished[0]}" in lines[0]
