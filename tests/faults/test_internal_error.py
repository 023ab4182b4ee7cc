"""A bug inside harness (not the user's input) still ends in one line, exit code 1, with the traceback
kept in the command's log; `--debug` prints it. An OSError is the user's environment: exit 2."""

from __future__ import annotations

import errno

import pytest
from fault_helpers import assert_one_line_error, message_lines


def _failing(exc):
    def run(_args):
        raise exc

    return run


def test_internal_error_is_one_line_with_the_traceback_in_the_log(monkeypatch, run_cli, harness_cache):
    import harness.commands.doctor as doctor

    monkeypatch.setattr(doctor, "run", _failing(ZeroDivisionError("division by zero in a bug")))
    code, _out, err = run_cli(["doctor"])
    lines = message_lines(err)
    assert code == 1 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("harness doctor: error: ZeroDivisionError: division by zero in a bug")
    log = harness_cache / "logs" / "doctor.log"
    assert str(log) in lines[0] and "ZeroDivisionError" in log.read_text(encoding="utf-8")
    code, _out, err = run_cli(["doctor", "--debug"])
    assert code == 1 and "Traceback (most recent call last)" in err


@pytest.mark.parametrize(
    "error,fix",
    [
        (errno.ENOSPC, "free disk space"),
        (errno.EACCES, "a path you can write to"),
        (errno.ENOTDIR, "a file stands where a folder"),
        (errno.ENAMETOOLONG, "shorter name"),
        (errno.EIO, "check the path"),
    ],
    ids=["disk full", "permission", "file for a folder", "name too long", "other"],
)
def test_os_error_is_one_line_naming_the_file(error, fix, monkeypatch, run_cli):
    import harness.commands.doctor as doctor

    monkeypatch.setattr(doctor, "run", _failing(OSError(error, "simulated", "some/file")))
    code, _out, err = run_cli(["doctor"])
    assert_one_line_error(code, err, "doctor", ["some/file", "simulated", fix])
