"""Task kinds: a registry so a new kind is one module with a `TASK` object."""

from __future__ import annotations

import difflib

from harness.errors import ConfigError
from harness.tasks.base import Request, Task


def get_task(kind: str, where: str = "task") -> Task:
    from harness.tasks import perplexity, qa, summarization

    registry = {t.kind: t for t in (qa.TASK, summarization.TASK, perplexity.TASK)}
    if kind not in registry:
        close = difflib.get_close_matches(kind, list(registry), n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"choose one of: {', '.join(registry)}"
        raise ConfigError(f"{where}: unknown task kind '{kind}'; {hint}")
    return registry[kind]


__all__ = ["Request", "Task", "get_task"]
