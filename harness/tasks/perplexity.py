"""Perplexity over whole documents with a sliding window, and bits per byte.

Each window scores only tokens no earlier window scored, with up to `context_length - stride`
tokens of context before them (the transformers perplexity guide's method), and the negative
log-likelihood is summed exactly per token rather than averaged per window. Bits per byte
divide by UTF-8 bytes, so models with different tokenizers can be compared.
"""
from __future__ import annotations

import math

from harness.config.suite import SuiteConfig
from harness.errors import ConfigError
from harness.scoring import Scorer
from harness.tasks.base import Request, Task


def _ppl(recs: list[dict]) -> float:
    tokens = sum(r["tokens"] for r in recs)
    return math.exp(sum(r["nll"] for r in recs) / tokens) if tokens else float("nan")


def _bpb(recs: list[dict]) -> float:
    n_bytes = sum(r["bytes"] for r in recs)
    return sum(r["nll"] for r in recs) / math.log(2) / n_bytes if n_bytes else float("nan")


class PerplexityTask(Task):
    kind = "perplexity"

    def build_requests(self, suite: SuiteConfig, examples, tokenizer, fewshot_pool):
        field = suite.perplexity.field
        requests = []
        for example in examples:
            text = example.get(field)
            if not isinstance(text, str) or not text:
                raise ConfigError(f"perplexity.field: example '{example.get('id', '?')}' has no text in '{field}'")
            requests.append(Request(id=str(example["id"]), prompt=text, references=[]))
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
        return [
            Scorer("perplexity", corpus=_ppl, higher_is_better=False),
            Scorer("bits_per_byte", corpus=_bpb, higher_is_better=False),
        ]

    def run(self, model, tokenizer, suite, requests, batch_size, on_record, progress):
        settings = suite.perplexity
        for request in requests:
            ids = tokenizer(request.prompt, add_special_tokens=True)["input_ids"]
            nll, scored = document_nll(model, ids, settings.context_length, settings.stride)
            on_record({"id": request.id, "prompt": request.prompt, "references": [],
                       "nll": nll, "tokens": scored, "bytes": len(request.prompt.encode("utf-8"))})
            if progress is not None:
                progress.update(1)


def document_nll(model, ids: list[int], context_length: int, stride: int) -> tuple[float, int]:
    """Summed negative log-likelihood (nats) of ids[1:] and how many tokens it covers."""
    import torch

    device = next(model.parameters()).device
    total, scored, prev_end = 0.0, 0, 0
    for begin in range(0, len(ids), stride):
        end = min(begin + context_length, len(ids))
        window = torch.tensor([ids[begin:end]], device=device)
        with torch.inference_mode():
            logits = model(input_ids=window).logits[0].float()
        logprobs = torch.log_softmax(logits[:-1], dim=-1)
        targets = window[0, 1:]
        token_lp = logprobs.gather(1, targets.unsqueeze(1)).squeeze(1).double()
        # Only positions predicting tokens after prev_end are new in this window.
        first_new = max(prev_end, begin + 1) - (begin + 1)
        total -= float(token_lp[first_new:].sum())
        scored += int(token_lp.shape[0] - first_new)
        prev_end = end
        if end == len(ids):
            break
    return total, scored


TASK = PerplexityTask()
