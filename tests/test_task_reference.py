"""docs/tasks.md is rendered from the task kinds' declarations and kept current."""

from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.tasks import TASKS, get_task
from harness.tasks.reference import COMMAND, render

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "tasks.md"


def test_the_reference_is_current():
    assert REFERENCE.read_text(encoding="utf-8") == render(), f"docs/tasks.md is stale: run `{COMMAND}`"


@pytest.mark.parametrize("kind", list(TASKS))
def test_every_kind_declares_itself(kind):
    task = TASKS[kind]
    assert task.summary and task.request_kind and task.reported_metrics and task.sections


def test_an_unknown_kind_names_the_nearest():
    with pytest.raises(ConfigError, match="did you mean 'summarization'"):
        get_task("sumarization")


def test_the_suite_field_names_every_kind():
    """config/ sits below tasks/ and cannot read the registry: its description is checked here."""
    from harness.config.suite import SuiteConfig

    description = SuiteConfig.model_fields["task"].description
    assert all(f"`{kind}`" in description for kind in TASKS), description
