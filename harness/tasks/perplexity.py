"""Perplexity over whole documents with a sliding window, and bits per byte.

Each window scores only tokens no earlier window scored, with up to `context_length - stride`
tokens of context before them (the transformers perplexity guide's method), and the negative
log-likelihood is summed exactly per token rather than averaged per window. Bits per byte
divide by UTF-8 bytes, so models with different tokenizers can be compared.

The first token of a document has nothing before it to be predicted from. Where the tokenizer
has a BOS token, the document starts with it (added if the tokenizer does not add it itself, as
lm-evaluation-harness's rolling log-likelihood does), so every token of the text is scored and
every byte counts. Where it has none, the first token goes unscored and its bytes leave the
denominator: a record's `bytes` are the bytes of the tokens that were scored, never more.
"""

from __future__ import annotations

import contextlib
import math

from harness.config.suite import SuiteConfig
from harness.engine import fused
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

    def build_requests(self, suite: SuiteConfig, examples, tokenizer, fewshot_pool, context_limit=None):
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

    def run(self, model, tokenizer, suite, requests, batch_size, on_record, progress, shard=None):
        """Every window of every document, batched longest first; a document's record is written
        as soon as its last window is scored."""
        settings = suite.perplexity
        encoded = [encode_document(tokenizer, r.prompt) for r in requests]
        docs = [ids for ids, _ in encoded]
        scored_bytes = [n for _, n in encoded]
        windows = [
            (d, w)
            for d, ids in enumerate(docs)
            for w in plan_windows(len(ids), settings.context_length, settings.stride)
        ]
        left = [0] * len(docs)
        for d, _ in windows:
            left[d] += 1
        totals = [[0.0, 0] for _ in docs]
        for d in range(len(docs)):
            if not left[d]:  # nothing to score (a one-token document)
                self._finish(requests[d], totals[d], 0, on_record, progress)
        windows.sort(key=lambda item: (-(item[1][1] - item[1][0]), item[0]))
        size = batch_size or max(1, 16384 // settings.context_length)  # ~16k tokens per forward on a GPU
        kernels = (
            fused.fused_kernels(model)
            if suite.engine != "plain" and fused.available(model)
            else contextlib.nullcontext()
        )
        with kernels:
            for start in range(0, len(windows), size):
                chunk = windows[start : start + size]
                scores = window_nll(model, [docs[d][w[0] : w[1]] for d, w in chunk], [w[2] for _, w in chunk])
                for (d, _), (nll, scored) in zip(chunk, scores):
                    totals[d][0] += nll
                    totals[d][1] += scored
                    left[d] -= 1
                    if not left[d]:
                        self._finish(requests[d], totals[d], scored_bytes[d], on_record, progress)

    @staticmethod
    def _finish(request, total, n_bytes: int, on_record, progress) -> None:
        on_record(
            {
                "id": request.id,
                "prompt": request.prompt,
                "references": [],
                "nll": total[0],
                "tokens": total[1],
                "bytes": n_bytes if total[1] else 0,
            }
        )
        if progress is not None:
            progress.update(1)


def encode_document(tokenizer, text: str) -> tuple[list[int], int]:
    """The ids a document is scored on, and the UTF-8 bytes of the text its scored tokens cover."""
    ids = tokenizer(text, add_special_tokens=True)["input_ids"]
    bos = tokenizer.bos_token_id
    if bos is not None:
        return (ids if ids and ids[0] == bos else [bos, *ids]), len(text.encode("utf-8"))
    if not ids:
        return ids, 0
    return ids, len(text.encode("utf-8")) - len(_first_token_text(tokenizer, text, ids).encode("utf-8"))


def _first_token_text(tokenizer, text: str, ids: list[int]) -> str:
    try:
        offsets = tokenizer(text, add_special_tokens=True, return_offsets_mapping=True)["offset_mapping"]
        return text[: offsets[0][1]]
    except (NotImplementedError, KeyError, TypeError, ValueError):  # slow tokenizers have no offsets
        return tokenizer.decode(ids[:1])


def plan_windows(n_tokens: int, context_length: int, stride: int) -> list[tuple[int, int, int]]:
    """(begin, end, first new target) of each window: the targets ids[begin+1:end] from index
    `first new` on are the ones no earlier window scored."""
    windows, prev_end = [], 0
    if n_tokens < 2:
        return windows
    for begin in range(0, n_tokens, stride):
        end = min(begin + context_length, n_tokens)
        windows.append((begin, end, max(prev_end, begin + 1) - (begin + 1)))
        prev_end = end
        if end == n_tokens:
            break
    return windows


def window_nll(model, windows: list[list[int]], first_new: list[int]) -> list[tuple[float, int]]:
    """(summed NLL in nats, tokens) of each window's targets from first_new on, in one forward.

    Windows are right-padded: under a causal mask a token never sees the padding after it, so no
    attention mask is needed and the attention kernel runs in its fastest, maskless form."""
    import torch

    device = next(model.parameters()).device
    width = max(len(w) for w in windows)
    ids = torch.tensor([w + [w[-1]] * (width - len(w)) for w in windows], device=device)
    with torch.inference_mode():
        logits = model(input_ids=ids, use_cache=False).logits  # a cache would copy every key and value once more
        sums = []
        for row, (window, first) in enumerate(zip(windows, first_new)):
            logprobs = torch.log_softmax(logits[row, : len(window) - 1].float(), dim=-1)
            targets = ids[row, 1 : len(window)]
            token_lp = logprobs.gather(1, targets.unsqueeze(1)).squeeze(1).double()
            sums.append(token_lp[first:].sum())
        totals = torch.stack(sums).tolist()  # one wait for the GPU per forward, not one per window
    return [(-total, len(window) - 1 - first) for total, window, first in zip(totals, windows, first_new)]


TASK = PerplexityTask()
