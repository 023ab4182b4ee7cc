"""Multiple choice scored by log-likelihood, as lm-evaluation-harness's `multiple_choice` tasks are.

Each example becomes a context (few-shot examples first) and a list of choices; each choice is one
log-likelihood request (the context, then `target_delimiter` + the choice), and the model's answer is
the likeliest choice (`acc`) or the likeliest per character (`acc_norm`). Every record keeps each
choice's log-likelihood, so that `harness rescore` recomputes any metric without the model.

Few-shot examples are drawn as lm-evaluation-harness's default sampler draws them: one
`random.Random(prompt.fewshot.seed)` per subject (or for the whole suite), `k` examples per sample
in dataset order, `k + 1` with the sample itself removed when the pool is the evaluated split.
"""

from __future__ import annotations

import json
import random

from harness.config.suite import SuiteConfig
from harness.data.expressions import expression, template
from harness.engine.requests import LoglikelihoodRequest
from harness.errors import ConfigError, DataError
from harness.metrics.aggregate import Scorer
from harness.metrics.choice import accuracy, macro_f1, prediction
from harness.tasks.base import Request, Task

METRICS = ("acc", "acc_norm", "f1")


class Fields:
    """The suite's `choice` section compiled once: context, choices, gold, subject of an example."""

    def __init__(self, suite: SuiteConfig):
        c = suite.choice
        self.context = template(c.context, "choice.context")
        self.delimiter = c.target_delimiter
        if isinstance(c.choices, list):
            each = [template(t, f"choice.choices[{n}]") for n, t in enumerate(c.choices)]
            self._choices = lambda ex, name: [render(ex, name) for render in each]
        else:
            self._choices = expression(c.choices, "choice.choices")
        self._gold = expression(c.gold, "choice.gold")
        self._subject = expression(c.subject, "choice.subject") if c.subject else None
        self.categories = c.categories

    def choices(self, example: dict, name: str) -> list[str]:
        value = self._choices(example, name)
        if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) for v in value):
            raise DataError(f"{name}: choice.choices gave {_show(value)}; it must give a non-empty list of texts")
        return list(value)

    def target(self, example: dict, name: str):
        """The gold as lm-evaluation-harness's doc_to_target returns it: a string of digits is an index."""
        value = self._gold(example, name)
        if isinstance(value, str) and value.isdigit():
            return int(value)
        return value

    def gold(self, example: dict, choices: list[str], name: str) -> list[int]:
        value = self.target(example, name)
        values = value if isinstance(value, (list, tuple)) else [value]
        golds = []
        for v in values:
            index = choices.index(v) if isinstance(v, str) and v in choices else v
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(choices):
                raise DataError(
                    f"{name}: choice.gold gave {_show(v)}, which is neither the index of one of its "
                    f"{len(choices)} choices nor one of their texts ({_show(choices)})"
                )
            golds.append(index)
        if not golds:
            raise DataError(f"{name}: choice.gold gave an empty list")
        return golds

    def answer_text(self, example: dict, choices: list[str], name: str) -> str:
        """What a few-shot example shows as its answer (lm-evaluation-harness's build_qa_turn)."""
        value = self.target(example, name)
        value = value[0] if isinstance(value, (list, tuple)) and value else value
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(choices):
            return choices[value]
        if isinstance(value, str):
            return value
        raise DataError(f"{name}: choice.gold gave {_show(value)}; a few-shot example needs a choice's index or text")

    def subject(self, example: dict, name: str) -> str | None:
        """The example's subject; None (no subject) where the suite names none or the expression gives none."""
        value = None if self._subject is None else self._subject(example, name)
        return None if value is None else str(value)


class FewShot:
    """lm-evaluation-harness's default sampler, one per subject: see the module's docstring."""

    def __init__(self, fields: Fields, pool: list[dict], k: int, seed: int, separator: str, same_split: bool):
        self.fields, self.k, self.seed, self.separator, self.same_split = fields, k, seed, separator, same_split
        self.pools: dict[str | None, list[dict]] = {}
        for n, example in enumerate(pool if k else []):
            self.pools.setdefault(fields.subject(example, f"few-shot example {n + 1}"), []).append(example)
        self.rngs: dict[str | None, random.Random] = {}

    def prefix(self, example: dict, subject: str | None, name: str) -> str:
        if not self.k:
            return ""
        pool = self.pools.get(subject, [])
        need = self.k + 1 if self.same_split else self.k
        if len(pool) < need:
            where = f" of subject '{subject}'" if subject is not None else ""
            raise ConfigError(
                f"prompt.fewshot.k: {self.k} examples asked but the few-shot pool{where} has {len(pool)}"
                f"{' (the sample itself excluded)' if self.same_split else ''}; lower k or give prompt.fewshot.path"
            )
        rng = self.rngs.setdefault(subject, random.Random(self.seed))
        if self.same_split:
            shots = [x for x in rng.sample(pool, self.k + 1) if x != example][: self.k]
            if len(shots) < self.k:  # the pool holds copies of the sample
                shots = rng.sample([x for x in pool if x != example], self.k)
        else:
            shots = rng.sample(pool, self.k)
        parts = []
        for n, shot in enumerate(shots):
            where = f"{name}, few-shot example {n + 1}"
            choices = self.fields.choices(shot, where)
            text = self.fields.context(shot, where) + self.fields.delimiter
            parts.append(text + self.fields.answer_text(shot, choices, where) + self.separator)
        return "".join(parts)


class ChoiceTask(Task):
    kind = "choice"
    summary = (
        "multiple choice: each choice scored by its log-likelihood after the context (acc, acc_norm, f1), "
        "as lm-evaluation-harness scores it; subject and category breakdowns"
    )
    request_kind = "log-likelihood"
    default_metrics = ["acc", "acc_norm"]
    sections = ("dataset", "choice", "prompt", "metrics")

    def build_requests(
        self, suite: SuiteConfig, examples, tokenizer, fewshot_pool, context_limit=None, encoder_decoder=False
    ):
        if suite.prompt.chat:
            raise ConfigError(
                "prompt.chat: the choice task scores plain text, as lm-evaluation-harness does by default; remove it"
            )
        fields, f = Fields(suite), suite.prompt.fewshot
        same_split = f.k > 0 and fewshot_pool is not None and _same(fewshot_pool, examples)
        shots = FewShot(fields, fewshot_pool or [], f.k, f.seed, f.separator, same_split)
        return [self._request(fields, shots, example) for example in examples]

    def _request(self, fields: Fields, shots: FewShot, example: dict) -> Request:
        name = f"dataset example '{example.get('id', '?')}'"
        choices = fields.choices(example, name)
        gold = fields.gold(example, choices, name)
        subject = fields.subject(example, name)
        context = shots.prefix(example, subject, name) + fields.context(example, name)
        extra = {"choices": choices, "gold": gold, "delimiter": fields.delimiter}
        if subject is not None:
            extra["subject"] = subject
            extra["category"] = fields.categories.get(subject)
        return Request(id=str(example["id"]), prompt=context, references=[choices[g] for g in gold], extra=extra)

    def check_scoring(self, suite, examples):
        self.scorers(suite, [])
        fields = Fields(suite)
        for example in examples:
            name = f"dataset example '{example.get('id', '?')}'"
            fields.gold(example, fields.choices(example, name), name)

    def scorers(self, suite, references):
        if suite.filters:
            raise ConfigError("filters: the choice task scores no generated answer; remove 'filters'")
        scorers = []
        for n, entry in enumerate(suite.metrics or self.default_metrics):
            if not isinstance(entry, str) or entry not in METRICS:
                raise ConfigError(f"metrics[{n}]: {entry!r}; the choice task's metrics are {', '.join(METRICS)}")
            scorers.append(_scorer(entry))
        return scorers

    def engine_request(self, suite, request):
        delimiter = request.extra["delimiter"]
        return [LoglikelihoodRequest(request.prompt, delimiter + choice) for choice in request.extra["choices"]]

    def record(self, request, result):
        extra = request.extra
        record = {
            "id": request.id,
            "prompt": request.prompt,
            "references": request.references,
            "choices": extra["choices"],
            "gold": extra["gold"],
            "loglikelihoods": [r.logprob for r in result],
            "is_greedy": [r.is_greedy for r in result],
            "choice_tokens": [r.tokens for r in result],
        }
        chosen = prediction(record["loglikelihoods"], extra["choices"])
        record["prediction"] = extra["choices"][chosen] if chosen is not None else None
        if "subject" in extra:
            record["subject"], record["category"] = extra["subject"], extra["category"]
        return record


def _scorer(name: str) -> Scorer:
    if name == "f1":
        return Scorer(
            "f1",
            corpus=lambda recs: macro_f1(
                [r["gold"][0] for r in recs], [prediction(r["loglikelihoods"], r["choices"]) for r in recs]
            ),
        )
    normalized = name == "acc_norm"
    return Scorer(name, per_sample=lambda r: accuracy(r["loglikelihoods"], r["choices"], r["gold"], normalized))


def _same(pool: list[dict], examples: list[dict]) -> bool:
    """Whether the few-shot pool is the evaluated split itself (then a sample never shows itself, as
    where lm-evaluation-harness's fewshot_split is its test_split): it holds every evaluated example.
    A dev split that shares an example or two with the evaluated one is another split."""
    if pool is examples:
        return True
    held = {_identity(x) for x in pool}
    return bool(examples) and all(_identity(x) in held for x in examples)


def _identity(example: dict) -> str:
    return json.dumps(example, sort_keys=True, ensure_ascii=False, default=str)


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


TASK = ChoiceTask()
