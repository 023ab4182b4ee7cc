"""Bad input to `harness train` fails fast with exit code 2 and one line on stderr that names the file
and the field; `--debug` shows the traceback. Every case runs with tiny limits, so a config that
wrongly validated would not train for long."""

from __future__ import annotations

import time

import pytest

# Small enough that a config which wrongly passes validation still finishes in seconds.
FAST = ["--set", "training.max_steps=1", "--set", "data.limit=2", "--output-dir", "out"]

GOOD_ROW = '{"context": "서울은 한국의 수도이다.", "question": "한국의 수도는?", "answer": "서울"}\n'

# id: (config YAML or None, {extra file: content}, extra argv, substrings the message must contain)
CASES = {
    "unknown key suggests the right one": ("lora:\n  rank: 8\n", {}, [], ["bad.yaml", "lora.rank", "did you mean 'r'"]),
    "misspelt key": (
        "training:\n  learnig_rate: 0.1\n",
        {},
        [],
        ["bad.yaml", "training.learnig_rate", "'learning_rate'"],
    ),
    "wrong type": ("training:\n  epochs: many\n", {}, [], ["bad.yaml", "training.epochs", "'many'"]),
    "learning rate infinite": (
        "training:\n  learning_rate: .inf\n",
        {},
        [],
        ["bad.yaml", "training.learning_rate", "finite number"],
    ),
    "dropout NaN": ("lora:\n  dropout: .nan\n", {}, [], ["bad.yaml", "lora.dropout", "finite number"]),
    "r zero": ("lora:\n  r: 0\n", {}, [], ["bad.yaml", "lora.r", "greater than 0"]),
    "r negative": ("lora:\n  r: -8\n", {}, [], ["bad.yaml", "lora.r", "-8"]),
    "unknown scheduler": ("training:\n  scheduler: cosin\n", {}, [], ["bad.yaml", "training.scheduler", "cosine"]),
    "section is not a mapping": ("lora: 8\n", {}, [], ["bad.yaml", "lora"]),
    "malformed yaml": ("lora:\n  r: [8\n  alpha: 16\n", {}, [], ["bad.yaml", "line"]),
    "top-level list": ("- name: x\n- base: tiny:llama-ko\n", {}, [], ["bad.yaml", "mapping", "list"]),
    "config file missing": (None, {}, ["missing.yaml"], ["missing.yaml", "not found"]),
    "missing data file": (
        "data:\n  path: no_such_data.jsonl\n",
        {},
        [],
        ["no_such_data.jsonl", "not found", "data.path"],
    ),
    "empty dataset": (
        "data:\n  path: empty.jsonl\n",
        {"empty.jsonl": "\n\n"},
        [],
        ["empty.jsonl", "empty", "data.path"],
    ),
    "malformed jsonl line": (
        "data:\n  path: broken.jsonl\n",
        {"broken.jsonl": GOOD_ROW + "{not json}\n" + GOOD_ROW},
        [],
        ["broken.jsonl", "line 2", "JSON"],
    ),
    "unknown built-in dataset": (
        "data:\n  path: builtin:no_such_set\n",
        {},
        [],
        ["builtin:no_such_set", "korquad_sample"],
    ),
    "undetectable data format": (
        "data:\n  path: notes.txt\n",
        {"notes.txt": "hello\n"},
        [],
        ["notes.txt", "data.format"],
    ),
    "template missing a field": (
        "data:\n  path: foo.jsonl\n  template: qa-ko\n",
        {"foo.jsonl": '{"foo": "bar"}\n{"foo": "baz"}\n'},
        [],
        ["foo.jsonl", "qa-ko", "'context'", "foo", "data.fields"],
    ),
    "field mapped to absent column": (
        "data:\n  path: qa.jsonl\n  fields:\n    question: q\n",
        {"qa.jsonl": GOOD_ROW * 2},
        [],
        ["qa.jsonl", "'q'", "question"],
    ),
    "unknown template": ("data:\n  template: qa-kr\n", {}, [], ["data.template", "qa-kr", "qa-ko"]),
    "target module absent from the model": (
        "lora:\n  target_modules: [nonexistent_proj]\n",
        {},
        [],
        ["lora.target_modules", "nonexistent_proj", "q_proj", "tiny:llama-ko"],
    ),
    "unknown model path": ("base: ./no/such/model\n", {}, [], ["base", "./no/such/model", "not found"]),
    "unknown tiny model": ("base: tiny:gpt-ko\n", {}, [], ["base", "tiny:gpt-ko", "tiny:llama-ko"]),
    "hub model unavailable offline": ("base: no-such-org/no-such-model\n", {}, [], ["no-such-org/no-such-model"]),
    "paged optimizer on CPU": (
        "training:\n  optimizer: paged_adamw_8bit\n",
        {},
        [],
        ["training.optimizer", "paged_adamw_8bit", "CUDA"],
    ),
    "bad --set syntax": (
        "name: ok\n",
        {},
        ["--set", "training.max_steps"],
        ["--set training.max_steps", "FIELD=VALUE"],
    ),
    "--set unknown field": (
        "name: ok\n",
        {},
        ["--set", "training.max_stpes=1"],
        ["bad.yaml", "training.max_stpes", "'max_steps'"],
    ),
    "--set wrong type": ("name: ok\n", {}, ["--set", "lora.r=eight"], ["bad.yaml", "lora.r", "'eight'"]),
}


def _argv(workdir, config, files, extra):
    for name, content in files.items():
        (workdir / name).write_text(content, encoding="utf-8")
    argv = ["train"]
    if config is not None:
        (workdir / "bad.yaml").write_text(config, encoding="utf-8")
        argv.append("bad.yaml")
    # Options after the case's own, so an option the case is about stays the first error.
    return argv + extra + FAST


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_config_is_one_line_exit_2(case, workdir, run_cli):
    config, files, extra, expected = CASES[case]
    started = time.monotonic()
    code, out, err = run_cli(_argv(workdir, config, files, extra))
    elapsed = time.monotonic() - started

    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("harness train: error: "), line
    assert "Traceback" not in err
    for needle in expected:
        assert needle in line, (needle, line)
    # Nothing was trained or written: the output directory was never created.
    assert not (workdir / "out").exists()
    assert elapsed < 60, elapsed


def test_debug_shows_the_traceback(workdir, run_cli):
    config, files, extra, _ = CASES["r zero"]
    code, _, err = run_cli(_argv(workdir, config, files, extra) + ["--debug"])
    assert code == 2
    assert "Traceback (most recent call last)" in err
    assert "ConfigError" in err
    # The one-line message still comes last.
    assert err.strip().splitlines()[-1].startswith("harness train: error: bad.yaml: field 'lora.r'")


def test_data_error_with_debug_shows_where_it_was_raised(workdir, run_cli):
    config, files, extra, _ = CASES["malformed jsonl line"]
    code, _, err = run_cli(_argv(workdir, config, files, extra) + ["--debug"])
    assert code == 2
    assert "Traceback (most recent call last)" in err and "DataError" in err
    assert "harness/data/readers.py" in err.replace("\\", "/")


def test_bad_config_in_a_real_process(workdir, run_subprocess):
    """Through `python -m harness` on a fresh cache (the first run on a new machine builds the tiny
    model): library warnings and progress bars must not precede the message, even for an error found
    after the model's module tree is read."""
    config, files, extra, expected = CASES["target module absent from the model"]
    proc = run_subprocess(_argv(workdir, config, files, extra), env={"HARNESS_CACHE": str(workdir / "cache")})
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("harness train: error: lora.target_modules:")
    for needle in expected:
        assert needle in lines[0]
    assert not (workdir / "out").exists()
