"""The CLI explains itself: every command is listed, every option of every command is documented
(commands added later are covered automatically), and `harness doctor` reports what it detects."""

from __future__ import annotations

import argparse
import json

import pytest

from harness.commands.cli import build_parser


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(actions) == 1
    return dict(actions[0].choices)


def _documented_options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]


COMMANDS = sorted(_subparsers(build_parser()))


def test_top_level_help_lists_every_command(run_cli):
    code, out, _ = run_cli(["--help"])
    assert code == 0
    assert {"train", "doctor"} <= set(COMMANDS)
    for name in COMMANDS:
        assert f"    {name}" in out, name
    # Each command carries a one-line summary in the listing.
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    summaries = {choice.dest: choice.help for choice in action._choices_actions}
    for name in COMMANDS:
        assert summaries.get(name), f"{name} has no summary in `harness --help`"
        assert " ".join(summaries[name].split())[:30] in " ".join(out.split()), name


def test_no_command_prints_help_and_fails(run_cli):
    code, out, _ = run_cli([])
    assert code == 2
    assert "COMMAND" in out and "train" in out


def test_version(run_cli):
    from harness import __version__

    code, out, _ = run_cli(["--version"])
    assert code == 0 and __version__ in out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_is_documented(command, run_cli):
    sub = _subparsers(build_parser())[command]
    code, out, err = run_cli([command, "--help"])
    assert code == 0, err
    assert out.startswith(f"usage: harness {command}")
    assert sub.description, f"harness {command} has no description"
    flat = " ".join(out.split())
    for action in _documented_options(sub):
        name = action.option_strings[0] if action.option_strings else action.dest
        assert action.help and action.help != argparse.SUPPRESS, f"harness {command} {name}: no help text"
        if action.option_strings:
            for option in action.option_strings:
                assert option in out, f"harness {command} --help does not show {option}"
        else:
            assert (action.metavar or action.dest) in out, f"harness {command} --help does not show {name}"
        assert " ".join(action.help.split())[:40] in flat, f"harness {command} {name}: help text not shown"
    # Every command accepts --debug.
    assert "--debug" in out


def test_train_help_names_its_options(run_cli):
    code, out, _ = run_cli(["train", "--help"])
    assert code == 0
    for option in ("--set", "--resume", "--overwrite", "--name", "--output-dir", "--base", "--data", "--debug"):
        assert option in out, option
    flat = " ".join(out.split())
    assert "config" in flat and "preset" in flat  # what happens without CONFIG is stated


def test_help_in_a_real_process(run_subprocess):
    proc = run_subprocess(["--help"], timeout=120)
    assert proc.returncode == 0, proc.stderr
    for name in COMMANDS:
        assert name in proc.stdout
    assert proc.stderr == ""


def test_doctor_table(run_cli):
    code, out, err = run_cli(["doctor"])
    assert code == 0, err
    for needle in (
        "device",
        "cpu",
        "bf16 supported",
        "bitsandbytes backend",
        "CPU cores",
        "python",
        "torch",
        "transformers",
        "peft",
        "trl",
        "bitsandbytes",
        "accelerate",
        "compute_dtype",
        "fp32",
        "optimizer",
        "adamw_torch",
        "train_micro_batch",
        "eval_batch",
        "gradient_checkpointing",
    ):
        assert needle in out, needle
    from harness.runtime.env import library_versions

    for name, version in library_versions().items():
        assert version in out, (name, version)


def test_doctor_json(run_cli):
    code, out, err = run_cli(["doctor", "--json"])
    assert code == 0, err
    doc = json.loads(out)
    env, decisions = doc["environment"], doc["decisions"]
    assert env["device"] == "cpu"
    assert env["bf16_supported"] is False
    assert env["bitsandbytes_backend"] == "cpu"
    assert env["cpu_count"] >= 1
    for lib in ("torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate", "datasets", "harness"):
        assert env["versions"][lib] not in ("", "not installed"), lib
    assert decisions == {
        "compute_dtype": "fp32",
        "train_micro_batch": decisions["train_micro_batch"],
        "eval_batch": decisions["eval_batch"],
        "optimizer": "adamw_torch",
        "gradient_checkpointing": False,
    }
    assert decisions["train_micro_batch"] >= 1 and decisions["eval_batch"] >= 1


def test_doctor_json_in_a_real_process(run_subprocess):
    """stdout is pure JSON (anything a library logs goes to stderr), so `harness doctor --json | jq` works."""
    proc = run_subprocess(["doctor", "--json"], timeout=120)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["environment"]["device"] == "cpu"
    assert "Traceback" not in proc.stderr
