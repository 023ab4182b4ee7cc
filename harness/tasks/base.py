"""What every task kind provides, and the shared flow of generative tasks:
build prompt → (the engine generates) → extract → record → score.

A task builds its samples' requests to the engine (harness.engine.requests) and turns the engine's
results into records; it never calls the model (harness.evaluate.execute runs the requests)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from harness.config.suite import SuiteConfig
from harness.data.prompts import apply_chat_template, load_template
from harness.engine.requests import GenerationRequest, Result
from harness.engine.requests import Request as EngineRequest
from harness.errors import ConfigError, DataError
from harness.metrics.aggregate import Scorer
from harness.metrics.errors import MetricError
from harness.metrics.registry import build_metric
from harness.metrics.repetition import repetition_stats
from harness.tasks.filters import apply_filters
from harness.tasks.long_prompts import fit_prompt, generation_budget


@dataclass
class Request:
    """A sample as eval keys, resumes and records it; what the engine runs for it is the task's
    `engine_request`."""

    id: str
    prompt: str
    references: list[str]
    extra: dict = field(default_factory=dict)


class Task:
    """A task kind's declaration (the class attributes, from which the suite's validation, `harness
    eval --help` and docs/tasks.md come) and its behaviour (the methods)."""

    kind = ""
    summary = ""  # what the kind measures, one line
    request_kind = ""  # what the engine is asked for each sample
    references_field = ""  # the dataset column holding the references ("" : none)
    default_metrics: list = []  # the metrics scored when the suite names none
    sections: tuple[str, ...] = ()  # the suite sections that configure the kind
    # Whether the engine deals whole batches of this task's requests to a world of processes itself.
    deals_batches = False

    @property
    def reported_metrics(self) -> tuple[str, ...]:
        return tuple(self.default_metrics)

    def build_requests(
        self,
        suite: SuiteConfig,
        examples: list[dict],
        tokenizer,
        fewshot_pool: list[dict],
        context_limit: int | None = None,
        encoder_decoder: bool = False,
    ) -> list[Request]:
        """One request per example; `context_limit` (the model's context in tokens; an
        encoder-decoder's encoder's, which the prompt has alone) lets a task fit long prompts (a
        skipped one has extra["skipped"])."""
        raise NotImplementedError

    def scorers(self, suite: SuiteConfig, references: list[list[str]]) -> list[Scorer]:
        raise NotImplementedError

    def check_scoring(self, suite: SuiteConfig, examples: list[dict]) -> None:
        """Build the scorers once from the dataset alone, so that a metric mistake (a name, an option,
        a user file) stops the eval before any model loads."""
        self.scorers(suite, [])

    def engine_request(self, suite: SuiteConfig, request: Request) -> EngineRequest:
        """What the engine runs for `request`."""
        raise NotImplementedError

    def record(self, request: Request, result: Result) -> dict:
        """The record of `request` from the engine's `result` (scored later by the task's scorers)."""
        raise NotImplementedError


class GenerativeTask(Task):
    """QA and summarization: the model writes text that is scored against references."""

    request_kind = "generation"
    sections = ("dataset", "prompt", "generation", "generation_grid", "metrics", "filters")
    # The passage `prompt.overflow: truncate` cuts when the suite names none.
    truncate_field = "context"
    deals_batches = True

    def references(self, example: dict) -> list[str]:
        value = example.get(self.references_field)
        if value is None:
            raise DataError(
                f"example '{example.get('id', '?')}' has no '{self.references_field}' field; "
                f"map one with dataset.fields"
            )
        if not isinstance(value, (str, list)):
            raise DataError(
                f"example '{example.get('id', '?')}': field '{self.references_field}' is a "
                f"{type(value).__name__}; give a string or a list of strings"
            )
        return [value] if isinstance(value, str) else [str(v) for v in value]

    def extract(self, output: str) -> str:
        return output.strip()

    def check_scoring(self, suite, examples):
        references = [self.references(e) for e in examples]
        self.scorers(suite, references)

    def answer(self, filters, output: str) -> str:
        """The text the metrics score: the suite's `filters` applied to `output`, else the task's own extraction."""
        return apply_filters(filters, output) if filters else self.extract(output)

    def _prediction(self, filters, record: dict) -> str:
        # From the raw output, so that a rescore with other filters re-extracts; records without
        # one (written by hand) are scored on the prediction they hold.
        return self.answer(filters, record["output"]) if "output" in record else record["prediction"]

    def build_requests(self, suite, examples, tokenizer, fewshot_pool, context_limit=None, encoder_decoder=False):
        p = suite.prompt
        template = load_template(p.template, p.text, None, where="prompt.template")
        shots = _FewShot(template, fewshot_pool, p.fewshot.k, p.fewshot.seed, p.fewshot.separator)
        budget = generation_budget(context_limit, suite, encoder_decoder)
        field_name = p.truncate_field or self.truncate_field
        requests = []
        for example in examples:
            where = f"dataset example '{example.get('id', '?')}'"

            def render(ex: dict, _where=where) -> str:
                prompt = shots.prefix(ex) + template.render_prompt(ex, _where)
                return apply_chat_template(tokenizer, prompt, p.system) if p.chat else prompt

            fitted = fit_prompt(render, example, field_name, tokenizer, budget, p.overflow, where)
            extra = {
                "truncated_tokens": fitted.cut_tokens,
                "truncated_chars": fitted.cut_chars,
                "filters": suite.filters,
            }
            if fitted.prompt is None:
                extra = {"skipped": fitted.skip_reason}
            requests.append(
                Request(
                    id=str(example["id"]), prompt=fitted.prompt or "", references=self.references(example), extra=extra
                )
            )
        return requests

    def scorers(self, suite, references):
        entries = suite.metrics or self.default_metrics
        answer = self._prediction
        scorers = []
        for n, entry in enumerate(entries):
            name, options = (
                (entry, {})
                if isinstance(entry, str)
                else (entry.get("name"), {k: v for k, v in entry.items() if k != "name"})
            )
            if not name:
                raise ConfigError(f"metrics[{n}]: missing 'name'; write for example {{name: rouge1, tokenizer: mecab}}")
            try:
                metric = build_metric(name, options, references)
            except MetricError as exc:
                raise ConfigError(f"metrics[{n}]: {exc}") from None
            per = metric.per_sample
            corpus = metric.corpus
            scorers.append(
                Scorer(
                    label=metric.label,
                    higher_is_better=metric.higher_is_better,
                    version=metric.version,
                    per_sample=(lambda r, f=per: f(answer(suite.filters, r), r["references"])) if per else None,
                    corpus=None
                    if per
                    else (
                        lambda recs, f=corpus: f(
                            [answer(suite.filters, r) for r in recs], [r["references"] for r in recs]
                        )
                    ),
                )
            )
        return scorers

    def engine_request(self, suite, request):
        return GenerationRequest(prompt=request.prompt, id=request.id)

    def record(self, request, result):
        return {
            "id": request.id,
            "prompt": request.prompt,
            "references": request.references,
            "output": result.output,
            "prediction": self.answer(request.extra.get("filters"), result.output),
            "prompt_tokens": result.prompt_tokens,
            "generated_tokens": result.generated_tokens,
            "stop_reason": result.stop_reason,
            "repetition": repetition_stats(result.output).to_dict(),
            "truncated_tokens": request.extra.get("truncated_tokens", 0),
            "truncated_chars": request.extra.get("truncated_chars", 0),
        }


class _FewShot:
    """k examples drawn per sample (seeded by the sample id), never the sample itself."""

    def __init__(self, template, pool: list[dict], k: int, seed: int, separator: str):
        self.template, self.pool, self.k, self.seed, self.separator = template, pool, k, seed, separator
        if k and template.response is None:
            raise ConfigError("prompt.fewshot: the template has no response part to show in examples")
        if k and len(pool) <= k:
            raise ConfigError(f"prompt.fewshot.k: {k} examples asked but the pool has {len(pool)}; lower k")

    def prefix(self, example: dict) -> str:
        if not self.k:
            return ""
        rng = random.Random(f"{self.seed}:{example.get('id')}")
        candidates = [e for e in self.pool if e.get("id") != example.get("id")]
        shots = rng.sample(candidates, self.k)
        parts = [
            self.template.render_prompt(s, "fewshot example") + self.template.render_response(s, "fewshot example")
            for s in shots
        ]
        return self.separator.join(parts) + self.separator
