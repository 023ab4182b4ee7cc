"""docs/tasks.md, rendered from the task kinds' declarations:

python -m harness.tasks.reference > docs/tasks.md
"""

from __future__ import annotations

from pathlib import Path

from harness.tasks import TASKS

# A kind's guide (how to write its suites) follows the table: harness/tasks/guides/KIND.md.
GUIDES = Path(__file__).with_name("guides")
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
    guides = [GUIDES / f"{kind}.md" for kind in TASKS]
    return "\n".join(lines) + "\n" + "".join("\n" + g.read_text(encoding="utf-8") for g in guides if g.is_file())


if __name__ == "__main__":
    print(render(), end="")
