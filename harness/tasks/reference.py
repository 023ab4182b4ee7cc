"""docs/tasks.md, rendered from the task kinds' declarations:

python -m harness.tasks.reference > docs/tasks.md
"""

from __future__ import annotations

from harness.tasks import TASKS

COMMAND = "python -m harness.tasks.reference > docs/tasks.md"


def render() -> str:
    lines = [
        "# Task kinds",
        "",
        f"<!-- Generated from the task declarations in harness/tasks/ by `{COMMAND}`; do not edit by hand. -->",
        "",
        "A suite's `task` field names one kind. Each kind builds one request to the engine per sample",
        "and scores the results; the suite sections listed configure it (docs/configuration.md).",
        "",
        "| kind | what it measures | engine request | references | metrics (default) | suite sections |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for task in TASKS.values():
        references = f"`{task.references_field}`" if task.references_field else "none"
        metrics = ", ".join(f"`{m}`" for m in task.reported_metrics)
        sections = ", ".join(f"`{s}`" for s in task.sections)
        lines.append(
            f"| `{task.kind}` | {task.summary} | {task.request_kind} | {references} | {metrics} | {sections} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")
