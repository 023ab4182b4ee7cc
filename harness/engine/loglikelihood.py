"""How likely the model finds a text: the log-likelihood of a continuation given a context (multiple
choice), and the rolling log-likelihood of a whole text over a sliding window (perplexity).

Both score right-padded rows in one forward each: under a causal mask a token never sees the
padding after it, so no attention mask is needed and the attention kernel runs in its fastest,
maskless form. Log-probabilities are summed in float64, exactly per token.

Rolling: each window scores only tokens no earlier window scored, with up to `context_length -
stride` tokens of context before them (the transformers perplexity guide's method). The first
token of a text has nothing before it to be predicted from. Where the tokenizer has a BOS token,
the text starts with it (added if the tokenizer does not add it itself, as lm-evaluation-harness's
rolling log-likelihood does), so every token of the text is scored and every byte counts. Where it
has none, the first token goes unscored and its bytes leave the result's `bytes`: the bytes of the
tokens that were scored, never more.

A text with a `source` is scored after it: the source's tokens (BOS first) come before the text's
as context that is never scored, and windows slide over both. On an encoder-decoder the context or
source is the encoder's input and the scored text the decoder's (harness.engine.seq2seq).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch

from harness.engine import fused, prefix_choices, scoring, seq2seq
from harness.engine.continuation import continuation_row
from harness.engine.model_info import context_length, encoder_decoder
from harness.engine.pretokenize import Pretokenized, choice_texts
from harness.engine.requests import (
    Loglikelihood,
    LoglikelihoodRequest,
    RollingLoglikelihood,
    RollingLoglikelihoodRequest,
    RunOptions,
)
from harness.runtime.env import release_cuda_memory

# Contexts per chunk of the fast path: the next chunk's texts are encoded while the model scores
# this one (the first chunk's encoding is the only one nothing hides).
CHUNK = 256
# Tokens per forward when the batch size is left to the engine (on a GPU, ~16k keeps it busy).
TOKENS_PER_FORWARD = 16384


def loglikelihood(
    model,
    tokenizer,
    requests: list[LoglikelihoodRequest],
    options: RunOptions,
    on_result: Callable[[int, Loglikelihood], None],
) -> None:
    """Every request's summed log-probability of its continuation and whether greedy decoding would
    produce it, batched longest first; `on_result(index, Loglikelihood)` as each batch finishes.

    The fast engine shares a forward among rows with the same input tokens and puts only scored
    positions through the LM head (harness.engine.scoring); engine "plain", and an
    encoder-decoder, score every request's row whole, as transformers' own forward gives it."""
    if options.engine != "plain" and not encoder_decoder(model):
        _fast(model, tokenizer, requests, options, on_result)
        return
    sources, rows = _rows(
        model,
        requests,
        lambda r: seq2seq.continuation_row(model, tokenizer, r),
        lambda r: continuation_row(tokenizer, r, context_length(model)),
    )
    order = sorted(range(len(rows)), key=lambda i: (-len(rows[i][0]), i))
    size = options.batch_size or max(1, TOKENS_PER_FORWARD // max((len(ids) for ids, _ in rows), default=1))
    with _kernels(model, options):
        for lo in range(0, len(order), size):
            chunk = order[lo : lo + size]
            scores = score_rows(
                model,
                [rows[i][0] for i in chunk],
                [rows[i][1] for i in chunk],
                [sources[i] for i in chunk] if sources else None,
            )
            for i, (logprob, greedy) in zip(chunk, scores):
                _answer(i, Loglikelihood(logprob, greedy, len(rows[i][0]) - rows[i][1]), options, on_result)


def _fast(model, tokenizer, requests: list[LoglikelihoodRequest], options: RunOptions, on_result) -> None:
    """The fast engine's rows, chunk by chunk (`_chunks`): each chunk's texts are encoded in one batch
    call on every core (pretokenize) in a thread while the model scores the chunk before it, on one
    stream of batches (prefix_choices.Stream); groups that share no prefix are scored at the end."""
    chunks = _chunks(requests)

    def encode(chunk: list[int]) -> Pretokenized:
        return Pretokenized(tokenizer, choice_texts([requests[i] for i in chunk]))

    def answer(i: int, logprob: float, greedy: bool, n: int) -> None:
        _answer(i, Loglikelihood(logprob, greedy, n), options, on_result)

    others: list[scoring.Group] = []
    stream = prefix_choices.Stream(model, tokenizer, options, answer, TOKENS_PER_FORWARD)
    with ThreadPoolExecutor(1) as pool, stream:
        encoding = pool.submit(encode, chunks[0]) if chunks else None
        for n, chunk in enumerate(chunks):
            row_tokenizer = encoding.result()
            if n + 1 < len(chunks):
                encoding = pool.submit(encode, chunks[n + 1])
            rows = [continuation_row(row_tokenizer, requests[i], context_length(model)) for i in chunk]
            groups, empty = scoring.group_rows(rows, chunk)
            for i in empty:  # an empty continuation: nothing scored, certain
                _answer(i, Loglikelihood(0.0, True, 0), options, on_result)
            prefixed, shared, rest = prefix_choices.take(model, groups, options)
            others += rest
            if prefixed:
                stream.feed(prefixed, shared)
        stream.finish()
    if others:
        with _kernels(model, options):
            _groups(model, others, options, on_result)


def _chunks(requests: list[LoglikelihoodRequest]) -> list[list[int]]:
    """The requests' indices in the order of their contexts, cut into chunks of about CHUNK contexts
    that keep each context's requests together: contexts that begin alike (a few-shot order's) stay
    neighbours, so a cut parts few of the prefixes a chunk's rows share."""
    order = sorted(range(len(requests)), key=lambda i: (requests[i].context, i))
    chunks: list[list[int]] = []
    contexts = 0
    for k, i in enumerate(order):
        new = k == 0 or requests[i].context != requests[order[k - 1]].context
        if new and (not chunks or contexts == CHUNK):
            chunks.append([])
            contexts = 0
        contexts += new
        chunks[-1].append(i)
    return chunks


def _groups(model, groups: list[scoring.Group], options: RunOptions, on_result) -> None:
    """One forward per batch of groups, halved after CUDA runs out of memory (see scoring)."""
    size, tokens = options.batch_size, scoring.tokens_per_forward(model, TOKENS_PER_FORWARD)
    left = scoring.batches(groups, size, tokens)
    while left:
        batch = left.pop(0)
        try:
            scored = scoring.score_groups(model, batch)
        except torch.OutOfMemoryError:
            if len(batch) == 1:
                raise
            # Memory ran short (fragmentation, a family's larger activations): halve the forwards.
            release_cuda_memory()
            size, tokens = (size and max(1, size // 2)), max(1, tokens // 2)
            left = scoring.batches([g for b in [batch, *left] for g in b], size, tokens)
            continue
        for i, logprob, greedy, n in scored:
            _answer(i, Loglikelihood(logprob, greedy, n), options, on_result)


def _answer(index: int, result: Loglikelihood, options: RunOptions, on_result) -> None:
    on_result(index, result)
    if options.progress is not None:
        options.progress.update(1)


def _rows(model, requests: list, seq2seq_row, decoder_row) -> tuple[list | None, list]:
    """(each request's encoder input, or None on a decoder-only model; each request's row)."""
    if not encoder_decoder(model):
        return None, [decoder_row(r) for r in requests]
    pairs = [seq2seq_row(r) for r in requests]
    return [source for source, _ in pairs], [row for _, row in pairs]


def rolling_loglikelihood(
    model,
    tokenizer,
    requests: list[RollingLoglikelihoodRequest],
    options: RunOptions,
    on_result: Callable[[int, RollingLoglikelihood], None],
) -> None:
    """Every window of every text, batched longest first; a text's result is handed over as soon as
    its last window is scored (a text with nothing to score, first)."""
    # (ids, bytes, first scored position) of each text, and the encoder inputs on an encoder-decoder.
    sources, encoded = _rows(
        model, requests, lambda r: seq2seq.rolling_row(model, tokenizer, r), lambda r: encode_rolling(tokenizer, r)
    )
    windows = [
        (d, w)
        for d, ((ids, _, first), r) in enumerate(zip(encoded, requests))
        for w in plan_windows(len(ids), r.context_length, r.stride, first)
    ]
    left = [0] * len(encoded)
    for d, _ in windows:
        left[d] += 1
    totals = [[0.0, 0] for _ in encoded]

    def finish(d: int) -> None:
        scored = totals[d][1]
        on_result(d, RollingLoglikelihood(nll=totals[d][0], tokens=scored, bytes=encoded[d][1] if scored else 0))
        if options.progress is not None:
            options.progress.update(1)

    for d in range(len(encoded)):
        if not left[d]:  # nothing to score (a one-token text)
            finish(d)
    windows.sort(key=lambda item: (-(item[1][1] - item[1][0]), item[0]))
    longest = max((r.context_length for r in requests), default=1)
    size = options.batch_size or max(1, TOKENS_PER_FORWARD // longest)
    with _kernels(model, options):
        for start in range(0, len(windows), size):
            chunk = windows[start : start + size]
            rows = [encoded[d][0][w[0] : w[1]] for d, w in chunk]
            scores = score_rows(
                model, rows, [w[2] + 1 for _, w in chunk], [sources[d] for d, _ in chunk] if sources else None
            )
            for (d, w), row, (logprob, _) in zip(chunk, rows, scores):
                totals[d][0] -= logprob
                totals[d][1] += len(row) - 1 - w[2]
                left[d] -= 1
                if not left[d]:
                    finish(d)


def encode_rolling(tokenizer, request: RollingLoglikelihoodRequest) -> tuple[list[int], int, int]:
    """(ids, the UTF-8 bytes their scored tokens cover, the position of the first scored token) of a
    text on a decoder-only model: a source's tokens (BOS first) before the text's, unscored."""
    if request.source is None:
        return (*encode_text(tokenizer, request.text), 1)
    source = tokenizer(request.source, add_special_tokens=True)["input_ids"]
    bos = tokenizer.bos_token_id
    source = source if bos is None or (source and source[0] == bos) else [bos, *source]
    text = tokenizer(request.text, add_special_tokens=False)["input_ids"]
    return source + text, len(request.text.encode("utf-8")), max(1, len(source))


def encode_text(tokenizer, text: str) -> tuple[list[int], int]:
    """The ids a text is scored on, and the UTF-8 bytes of the text its scored tokens cover."""
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


def plan_windows(n_tokens: int, context_length: int, stride: int, first: int = 1) -> list[tuple[int, int, int]]:
    """(begin, end, first new target) of each window: the targets ids[begin+1:end] from index
    `first new` on are the ones no earlier window scored. Targets before position `first` (a
    source's tokens) are context only; a window holding none of the others is left out."""
    windows, prev_end = [], first
    if n_tokens <= first:
        return windows
    for begin in range(0, n_tokens, stride):
        end = min(begin + context_length, n_tokens)
        if end > prev_end:
            windows.append((begin, end, max(prev_end, begin + 1) - (begin + 1)))
            prev_end = end
        if end == n_tokens:
            break
    return windows


def score_rows(model, rows: list[list[int]], starts: list[int], sources=None) -> list[tuple[float, bool]]:
    """(summed log-probability in nats of row[t] for t from starts[i] on, whether each such token
    is the model's most likely one) of every row, in one forward of right-padded rows; `sources`:
    each row's encoder input, on an encoder-decoder (the rows are then the decoder's)."""
    device = next(model.parameters()).device
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [r[-1]] * (width - len(r)) for r in rows], device=device)
    with torch.inference_mode():
        if sources is not None:
            logits = seq2seq.logits(model, sources, ids)
        else:
            # A row's last token predicts nothing: it is not fed (a row may be one token longer than
            # the model's context). A cache would copy every key and value once more.
            logits = model(input_ids=ids[:, : max(1, width - 1)], use_cache=False).logits
        sums, greedy = [], []
        for row, (tokens, start) in enumerate(zip(rows, starts)):
            logprobs = torch.log_softmax(logits[row, start - 1 : len(tokens) - 1].float(), dim=-1)
            targets = ids[row, start : len(tokens)]
            sums.append(logprobs.gather(1, targets.unsqueeze(1)).squeeze(1).double().sum())
            greedy.append((logprobs.argmax(dim=-1) == targets).all())
        # One wait for the GPU per forward, not one per row.
        return list(zip(torch.stack(sums).tolist(), torch.stack(greedy).tolist()))


def _kernels(model, options: RunOptions):
    """Fused kernels for the forwards where the engine is not "plain" and the model has them."""
    fast = options.engine != "plain" and fused.available(model)
    return fused.fused_kernels(model) if fast else contextlib.nullcontext()
