"""Task kinds: a registry so a new kind is one module with a `TASK` object that declares itself."""

from __future__ import annotations

import difflib

from harness.errors import ConfigError
from harness.tasks import choice, perplexity, qa, summarization
from harness.tasks.base import Request, Task

TASKS: dict[str, Task] = {t.kind: t for t in (qa.TASK, summarization.TASK, perplexity.TASK, choice.TASK)}


def get_task(kind: str, where: str = "task") -> Task:
    if kind not in TASKS:
        close = difflib.get_close_matches(kind, list(TASKS), n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"choose one of: {', '.join(TASKS)}"
        raise ConfigError(f"{where}: unknown task kind '{kind}'; {hint}")
    return TASKS[kind]


__all__ = ["TASKS", "Request", "Task", "get_task"]
