"""Bad suites and inputs through `harness.commands.cli.main(["eval", ...])`: exit code 2 and exactly one
line on stderr (`harness eval: error: ...`) that names the file or field and what to do.

Progress bars (transformers' weight loading, the eval's own bar) are rendered by tqdm on stderr
too; they are not messages, so they are dropped before counting lines.
"""

from __future__ import annotations

import json
import shutil

import pytest
from eval_helpers import SUITES
from support import message_lines


@pytest.fixture
def eval_error(run_cli):
    """Run `harness eval ARGS`; assert exit 2 and one stderr line containing each of `expected`."""

    def check(args: list, *expected: str) -> str:
        code, _out, err = run_cli(["eval", *args])
        lines = message_lines(err)
        assert code == 2, f"exit {code}; stderr:\n{err}"
        assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n" + "\n".join(lines)
        line = lines[0]
        assert line.startswith("harness eval: error: "), line
        for text in expected:
            assert text in line, f"{text!r} not in {line!r}"
        return line

    return check


def write_suite(path, **fields) -> str:
    base = {
        "name": "bad",
        "task": "qa",
        "dataset": {"path": "builtin:korquad_sample", "limit": 2},
        "generation": {"max_new_tokens": 4},
    }
    for key, value in fields.items():
        base[key] = value
    path.write_text(json.dumps(base, ensure_ascii=False), encoding="utf-8")  # JSON is YAML
    return str(path)


# ------------------------------------------------------------- caught before the model loads


def test_unknown_task_kind_suggests_nearest(eval_error, workdir):
    suite = write_suite(workdir / "s.yaml", task="summarisation")
    eval_error([suite], "s.yaml", "task", "unknown task kind 'summarisation'", "did you mean 'summarization'?")


def test_unknown_suite_key_suggests_nearest(eval_error, workdir):
    suite = write_suite(workdir / "s.yaml", generaton={"max_new_tokens": 4})
    eval_error([suite], "s.yaml", "unknown field 'generaton'", "did you mean 'generation'?")


def test_unknown_nested_key_via_set(eval_error):
    eval_error(
        [SUITES / "korquad_sample.yaml", "--set", "generation.max_new_token=4"],
        "korquad_sample.yaml",
        "generation.max_new_token",
        "did you mean 'max_new_tokens'?",
    )


def test_missing_suite_file(eval_error, workdir):
    eval_error([workdir / "nope.yaml"], "nope.yaml", "not found")


def test_invalid_yaml(eval_error, workdir):
    path = workdir / "broken.yaml"
    path.write_text("name: x\ntask: [qa\n", encoding="utf-8")
    eval_error([path], "broken.yaml", "line")


@pytest.mark.parametrize("limit", ["-3", "0"])
def test_non_positive_limit(eval_error, limit):
    eval_error([SUITES / "korquad_sample.yaml", "--limit", limit], f"--limit {limit}", "positive")


def test_zero_batch_size(eval_error):
    eval_error([SUITES / "korquad_sample.yaml", "--batch-size", "0"], "batch_size")


def test_korquad_without_data_path_or_env(eval_error, monkeypatch):
    monkeypatch.delenv("KORQUAD_DEV", raising=False)
    eval_error([SUITES / "korquad.yaml", "--limit", "2"], "korquad.yaml", "dataset.path", "--data", "KORQUAD_DEV")


def test_malformed_dataset_json(eval_error, workdir):
    data = workdir / "bad.json"
    data.write_text('{"data": [{"title": "x", "paragraphs": [', encoding="utf-8")
    eval_error([SUITES / "korquad_sample.yaml", "--data", data], "bad.json", "malformed JSON", "line 1")


def test_malformed_dataset_jsonl_line(eval_error, workdir):
    data = workdir / "bad.jsonl"
    data.write_text('{"id": "1", "document": "a", "summary": "b"}\n{"id": "2", "document": \n', encoding="utf-8")
    eval_error([SUITES / "summarization_ko.yaml", "--data", data], "bad.jsonl", "line 2")


def test_empty_dataset(eval_error, workdir):
    data = workdir / "empty.jsonl"
    data.write_text("\n", encoding="utf-8")
    eval_error([SUITES / "summarization_ko.yaml", "--data", data], "empty.jsonl", "empty")


def test_missing_dataset_file(eval_error, workdir):
    eval_error([SUITES / "korquad_sample.yaml", "--data", workdir / "absent.json"], "absent.json", "not found")


def test_duplicate_adapter_names(eval_error, workdir):
    eval_error(
        [SUITES / "korquad_sample.yaml", "--adapter", f"a={workdir}/x", "--adapter", f"a={workdir}/y"],
        "--adapter",
        "'a'",
        "twice",
    )


def test_reserved_adapter_name(eval_error, workdir):
    eval_error([SUITES / "korquad_sample.yaml", "--adapter", f"base={workdir}/x"], "--adapter", "'base'", "reserved")


def test_unknown_metric(eval_error, workdir):
    suite = write_suite(workdir / "s.yaml", metrics=["exact_match", "rouge9"])
    eval_error([suite], "metrics[1]", "rouge9")


def test_unknown_tiny_base(eval_error):
    eval_error([SUITES / "korquad_sample.yaml", "--base", "tiny:nope"], "tiny:nope")


# ------------------------------------------------------------- caught after the base loads (slow)


@pytest.mark.slow
def test_template_field_absent_from_the_data(eval_error):
    # qa-ko needs context/question; the summarization documents have document/summary.
    eval_error(
        [SUITES / "summarization_ko.yaml", "--limit", "2", "--set", "prompt.template=qa-ko"],
        "template 'qa-ko'",
        "'context'",
        "document",
    )


@pytest.mark.slow
def test_missing_adapter_directory(eval_error, workdir):
    eval_error(
        [SUITES / "korquad_sample.yaml", "--limit", "2", "--adapter", f"ko={workdir}/absent"],
        "adapter 'ko'",
        "absent",
        "not found",
    )


@pytest.mark.slow
def test_adapter_directory_without_adapter_config(eval_error, workdir, eval_adapter):
    broken = workdir / "no-config"
    shutil.copytree(eval_adapter, broken)
    (broken / "adapter_config.json").unlink()
    eval_error(
        [SUITES / "korquad_sample.yaml", "--limit", "2", "--adapter", f"ko={broken}"],
        "adapter 'ko'",
        "adapter_config.json",
    )


@pytest.mark.slow
def test_adapter_trained_on_another_base_name(eval_error, workdir, eval_adapter):
    other = workdir / "other-base"
    shutil.copytree(eval_adapter, other)
    record = json.loads((other / "train_record.json").read_text(encoding="utf-8"))
    record["base_model"] = "tiny:other"
    (other / "train_record.json").write_text(json.dumps(record), encoding="utf-8")
    eval_error(
        [SUITES / "korquad_sample.yaml", "--limit", "2", "--adapter", f"ko={other}"],
        "adapter 'ko'",
        "tiny:other",
        "tiny:llama-ko",
    )


@pytest.mark.slow
def test_adapter_trained_on_another_base_shape(eval_error, workdir, eval_adapter):
    other = workdir / "other-shape"
    shutil.copytree(eval_adapter, other)
    record = json.loads((other / "train_record.json").read_text(encoding="utf-8"))
    record["base_signature"]["hidden_size"] = 4096
    (other / "train_record.json").write_text(json.dumps(record), encoding="utf-8")
    eval_error(
        [SUITES / "korquad_sample.yaml", "--limit", "2", "--adapter", f"ko={other}"], "adapter 'ko'", "hidden_size=4096"
    )


@pytest.mark.slow
def test_prompt_longer_than_the_context(eval_error):
    eval_error(
        [SUITES / "korquad_sample.yaml", "--limit", "2", "--set", "generation.max_new_tokens=5000"],
        "max_new_tokens=5000",
        "context of 2048",
    )


@pytest.mark.slow
def test_no_model_to_evaluate(eval_error):
    eval_error([SUITES / "korquad_sample.yaml", "--limit", "2", "--no-base"], "nothing to evaluate")
