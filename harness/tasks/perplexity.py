"""Perplexity over whole documents with a sliding window, and bits per byte.

Each document is one rolling log-likelihood request to the engine (harness.engine.loglikelihood:
windows of `perplexity.context_length` tokens, `perplexity.stride` apart, each scoring only the
tokens no earlier window scored; a BOS token first where the tokenizer has one). The negative
log-likelihood is summed exactly per token rather than averaged per window. Bits per byte divide
by the UTF-8 bytes of the scored tokens, so models with different tokenizers can be compared.

`perplexity.source_field` makes it the perplexity of the text given a source (a summary given its
dialogue): an encoder-decoder reads the source in its encoder while the windows slide over the text
in its decoder; a decoder-only model reads it before the text, unscored.
"""

from __future__ import annotations

import math

from harness.config.suite import SuiteConfig
from harness.engine.requests import RollingLoglikelihoodRequest
from harness.errors import ConfigError
from harness.metrics.aggregate import Scorer
from harness.tasks.base import Request, Task


def _ppl(recs: list[dict]) -> float:
    tokens = sum(r["tokens"] for r in recs)
    return math.exp(sum(r["nll"] for r in recs) / tokens) if tokens else float("nan")


def _bpb(recs: list[dict]) -> float:
    n_bytes = sum(r["bytes"] for r in recs)
    return sum(r["nll"] for r in recs) / math.log(2) / n_bytes if n_bytes else float("nan")


class PerplexityTask(Task):
    kind = "perplexity"
    summary = (
        "perplexity and bits per byte of whole documents (or of a text given a source), scored with a sliding window"
    )
    request_kind = "rolling log-likelihood"
    reported_metrics = ("perplexity", "bits_per_byte")  # fixed: the suite's `metrics` must stay empty
    sections = ("dataset", "perplexity")

    def build_requests(
        self, suite: SuiteConfig, examples, tokenizer, fewshot_pool, context_limit=None, encoder_decoder=False
    ):
        field, source_field = suite.perplexity.field, suite.perplexity.source_field
        requests = []
        for example in examples:
            text = example.get(field)
            if not isinstance(text, str) or not text:
                raise ConfigError(f"perplexity.field: example '{example.get('id', '?')}' has no text in '{field}'")
            extra = {}
            if source_field:
                source = example.get(source_field)
                if not isinstance(source, str):
                    raise ConfigError(
                        f"perplexity.source_field: example '{example.get('id', '?')}' has no text in "
                        f"'{source_field}'; map the column with dataset.fields or remove source_field"
                    )
                extra = {"source": source}
            requests.append(Request(id=str(example["id"]), prompt=text, references=[], extra=extra))
        # stride == context_length would leave the first token of every window after the first
        # without context, so it would never be scored; keep at least one token of overlap.
        if suite.perplexity.stride >= suite.perplexity.context_length:
            raise ConfigError(
                f"perplexity.stride: {suite.perplexity.stride} must be smaller than perplexity.context_length "
                f"({suite.perplexity.context_length}) so that every token is scored with some context"
            )
        return requests

    def scorers(self, suite, references):
        if suite.metrics:
            raise ConfigError("metrics: the perplexity task reports perplexity and bits_per_byte; remove 'metrics'")
        if suite.filters:
            raise ConfigError("filters: the perplexity task scores no generated answer; remove 'filters'")
        return [
            Scorer("perplexity", corpus=_ppl, higher_is_better=False),
            Scorer("bits_per_byte", corpus=_bpb, higher_is_better=False),
        ]

    def engine_request(self, suite, request):
        settings = suite.perplexity
        return RollingLoglikelihoodRequest(
            request.prompt, settings.context_length, settings.stride, request.extra.get("source")
        )

    def record(self, request, result):
        return {
            "id": request.id,
            "prompt": request.prompt,
            "references": [],
            **({"source": request.extra["source"]} if "source" in request.extra else {}),
            "nll": result.nll,
            "tokens": result.tokens,
            "bytes": result.bytes,
        }


TASK = PerplexityTask()
