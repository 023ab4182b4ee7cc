"""Constants and checks shared by the fault suite's modules (fixtures are in conftest.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "eval"))

from eval_helpers import SUITES  # noqa: F401  (re-exported for the suite's modules)
from support import message_lines

ADAPTER = "ad"
RUN_ID = "faults"
# Small but real: four KorQuAD samples, four new tokens.
EVAL_ARGS = ["--limit", "4", "--set", "generation.max_new_tokens=4", "--set", "bootstrap.resamples=50"]


def assert_one_line_error(code, err: str, command: str, needles=()) -> str:
    """Exit 2, one line `harness COMMAND: error: ...` holding every needle, no traceback."""
    lines = message_lines(err)
    assert "Traceback" not in err, err
    assert code == 2, f"exit {code}; stderr:\n{err}"
    assert len(lines) == 1, "expected one line on stderr, got:\n" + "\n".join(lines)
    assert lines[0].startswith(f"harness {command}: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def assert_ok(code, err: str) -> None:
    assert "Traceback" not in err, err
    assert code == 0, f"exit {code}; stderr:\n{err}"


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_bytes().decode("utf-8").split("\n") if line.strip()]
