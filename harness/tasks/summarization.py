"""Summarization: the whole generation (cut at stop strings) is the summary."""

from __future__ import annotations

from harness.tasks.base import GenerativeTask


class SummarizationTask(GenerativeTask):
    kind = "summarization"
    summary = "the whole output, cut at stop strings, is a summary scored against references"
    default_metrics = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
    references_field = "summary"
    truncate_field = "document"


TASK = SummarizationTask()
