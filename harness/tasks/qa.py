"""Extractive QA (KorQuAD, SQuAD): the answer is the generation up to its first line break."""

from __future__ import annotations

from harness.tasks.base import GenerativeTask


class QATask(GenerativeTask):
    kind = "qa"
    summary = "extractive question answering (KorQuAD, SQuAD): the answer is the output's first line (or what the suite's filters extract)"
    default_metrics = ["exact_match", "f1"]
    references_field = "answers"

    def extract(self, output: str) -> str:
        # The answer is the first line; stop strings were already cut by the engine.
        return output.strip().split("\n", 1)[0].strip()


TASK = QATask()
