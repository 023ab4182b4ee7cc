"""Decoding over a fixed-shape KV cache, with the one-token step replayed as a CUDA graph.

`model.generate` rebuilds masks, positions and cache bookkeeping in Python for every token and
synchronises with the GPU to test for the end; on a GPU machine with a slow CPU that launch
overhead, not the GPU, sets the pace of decoding. Here a batch is prefilled once (`prefill`), then
every step (`decode_step`, `decode_n`) runs on static buffers (token, positions, a [batch, max_len]
mask over one preallocated cache, harness.engine.cache), so the same kernels can be captured once
and replayed. A one-row decoder (a streamed answer) prefills the same way, in replays of a graph
over a fixed chunk of prompt tokens: eagerly its prefill is bound by the CPU, not the GPU. Tokens
are chosen by harness.engine.sampling, so greedy answers equal `generate`'s.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

import torch

from harness.config.generation import GenerationSettings
from harness.engine import fused, sampling
from harness.engine.batching import left_pad, passes
from harness.engine.cache import SlotCache, cache_length
from harness.engine.model_info import end_ids, text_config
from harness.engine.prefixes import first_width, slots, split
from harness.engine.step_attention import step_attention
from harness.engine.text import holds_stop
from harness.errors import first_line

logger = logging.getLogger(__name__)

# A one-row decoder's prefill chunk. Eagerly a prompt's prefill is bound by Python and kernel
# launches on a GPU machine's slow CPU, whatever the prompt's length; a replay of the captured chunk
# costs a fraction of that in GPU time, mostly dequantizing the weights once (benchmarks/RESULTS.md).
PREFILL_CHUNK = 256


class StaticDecoder:
    """Decodes batches of up to `batch` prompts needing up to `slots` cache slots (prompt + new
    tokens; rounded up to a multiple of 16)."""

    def __init__(
        self,
        model,
        tokenizer,
        settings: GenerationSettings,
        batch: int,
        slots: int,
        log: Callable[[str], None] | None = None,
    ):
        self.model, self.tokenizer, self.settings = model, tokenizer, settings
        self.batch, self.max_len = batch, cache_length(slots)
        max_len = self.max_len
        self.device = dev = next(model.parameters()).device
        self.use_graph = self.device.type == "cuda"
        self.log = log or logger.warning
        self.cache = SlotCache(text_config(model).num_hidden_layers, batch, max_len)
        self.token = torch.zeros((batch, 1), dtype=torch.long, device=dev)
        self.position = torch.zeros((batch, 1), dtype=torch.long, device=dev)
        self.slot = torch.zeros((1,), dtype=torch.long, device=dev)
        self.valid = torch.zeros((batch, max_len), dtype=torch.bool, device=dev)
        self.logits = None
        self.graph = None
        self.chunk = None  # a one-row decoder's prefill graph and its buffers (see `_prefill_chunks`)
        self.dtype = self._activation_dtype()
        self.eos = torch.tensor(end_ids(model, tokenizer), device=dev)
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos[0].item()
        self.processors = None  # per batch: the penalty must know each row's padding (see `decode_n`)
        self.kernels = (lambda: fused.fused_kernels(model)) if fused.available(model) else contextlib.nullcontext
        # Each step's tokens and end flags, copied to the host before the next step is queued (see `decode_step`).
        self.staged = torch.zeros((2, batch), dtype=torch.long, pin_memory=self.use_graph)
        self.staged_event = torch.cuda.Event() if self.use_graph else None

    def close(self) -> None:
        """Free the cache and the graph now."""
        self.cache.free()
        self.graph = self.chunk = None

    def _activation_dtype(self):
        embed = self.model.get_input_embeddings()
        return embed.weight.dtype if embed.weight.dtype in (torch.float16, torch.bfloat16) else torch.float32

    def _mask(self, valid, query_slots):
        """Additive [rows, 1, queries, slots] mask: a query sees valid slots up to its own."""
        slots = torch.arange(valid.shape[-1], device=self.device)
        allowed = valid[:, None, None, :] & (slots[None, None, None, :] <= query_slots[None, None, :, None])
        return torch.zeros(allowed.shape, dtype=self.dtype, device=self.device).masked_fill_(
            ~allowed, torch.finfo(self.dtype).min
        )

    def _forward(self, input_ids, position_ids, mask, logits_to_keep=1):
        out = self.model(
            input_ids=input_ids,
            position_ids=position_ids,
            attention_mask=mask,
            past_key_values=self.cache,
            use_cache=True,
            logits_to_keep=logits_to_keep,
        )
        return out.logits[:, -1, :]

    def _step(self):
        """One token for every row, from the static buffers (what the CUDA graph replays)."""
        self.valid.index_fill_(1, self.slot, True)
        self.cache.positions = self.slot
        with step_attention(self.device):
            logits = self._forward(self.token, self.position, self._mask(self.valid, self.slot))
        if self.logits is None:
            self.logits = logits.float().clone()
        else:
            self.logits.copy_(logits)

    def _capture(self, body: Callable[[], None]):
        """`body` (which reads and writes only static buffers) captured as a CUDA graph, or None
        (and no more graphs) when capture fails."""
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):  # the bodies are idempotent: same slots, same values
                body()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                body()
        except Exception as exc:
            self.use_graph = False
            self.log(f"decoding without CUDA graphs: capture failed ({first_line(exc, 120)})")
            return None
        return graph

    def run(
        self,
        prompts: list[list[int]],
        should_stop: Callable[[], bool] | None = None,
        shared: list[int] | None = None,
        on_host: bool = False,
    ) -> Iterator:
        """Decode one batch; yields, after each step, the newest token of every row (pad once a row
        ended): a tensor on the model's device, or with `on_host` a list of ints.

        `shared[i]` is how many leading tokens prompt i shares with others of the batch (see
        harness.engine.prefixes): each distinct prefix is prefilled once. Rows beyond len(prompts) are
        filled with copies of the prompt with the shortest second part and ignored. A row also ends
        once its text contains a stop string (tested every few steps: the answer is cut there anyway,
        this only saves the steps).
        """
        rows, first = self._fill(prompts, shared)
        with torch.inference_mode():
            logits = self.prefill(rows, first)
            yield from self.decode_n(rows, logits, len(prompts), should_stop, on_host)

    def last_logits(self, prompts: list[list[int]], shared: list[int] | None = None):
        """The last prompt token's logits (float32) of every prompt, from the prefill alone (see
        `run`): a one-token choice's scores after shared few-shot prefixes (harness.engine.prefix_choices)."""
        rows, first = self._fill(prompts, shared)
        with torch.inference_mode():
            return self.prefill(rows, first)[: len(prompts)]

    def _fill(self, prompts: list[list[int]], shared: list[int] | None) -> tuple[list[list[int]], list[int]]:
        """The batch's rows and each one's first part (see `_prefill`), checked against the cache."""
        n = len(prompts)
        first = split(prompts, shared)
        need = slots(prompts, first, self.settings.max_new_tokens)
        if need > self.max_len:
            raise ValueError(f"batch needs {need} slots, the cache has {self.max_len}")
        # The cheapest prompt to prefill fills the rows a graph's fixed batch has beyond the prompts.
        filler = min(range(n), key=lambda i: len(prompts[i]) - first[i])
        return prompts + [prompts[filler]] * (self.batch - n), first + [first[filler]] * (self.batch - n)

    def prefill(self, rows: list[list[int]], first: list[int]):
        """Fill the cache with the batch's rows; the last prompt token's logits of every row."""
        if self.use_graph and self.batch == 1 and not any(first) and len(rows[0]) > 0:
            logits, last = self._prefill_chunks(rows[0])
        else:
            with self.kernels():
                logits, last = self._prefill(rows, first)
        self.position.copy_(last + 1)
        return logits

    def decode_n(self, rows: list[list[int]], logits, n: int, should_stop, on_host: bool) -> Iterator:
        """Up to max_new_tokens steps after `prefill` (see `run`); stops once the first `n` rows ended."""
        s = self.settings
        self.processors = sampling.processors(s, sampling.left_padding(rows, self.device))
        sequence = left_pad(rows, self.pad)[0].to(self.device) if self.processors else None
        finished = torch.zeros(self.batch, dtype=torch.bool, device=self.device)
        history = []
        for step in range(s.max_new_tokens):
            token, sequence = self.decode_step(sequence, logits if step == 0 else self.logits, step, finished)
            history.append(token)
            yield self._staged(0, n) if on_host else token[:n]
            if should_stop is not None and should_stop():
                return
            # Testing for the end waits for the GPU; every 8 steps is often enough.
            if (step + 1) % 8 == 0 and self._all_ended(history, finished, n):
                return

    def decode_step(self, sequence, logits, step: int, finished):
        """Choose every row's token from `logits` (pad once a row ended; `finished` is updated) and
        queue the next step; (the tokens, the rows so far for the processors)."""
        token = sampling.choose(self.settings, self.processors, self.eos, sequence, logits, step)
        token = torch.where(finished, torch.full_like(token, self.pad), token)
        finished |= torch.isin(token, self.eos)
        self.token.copy_(token[:, None])
        if sequence is not None:
            sequence = torch.cat([sequence, token[:, None]], dim=1)
        self._stage(token, finished)
        if step + 1 < self.settings.max_new_tokens:
            # The next step is queued before this token goes to the caller: the GPU computes it
            # while the caller reads the token and streams its text. The token was staged on
            # the host before, so reading it waits for this step only, not the queued one.
            # At most one step is wasted when the caller then stops.
            self._advance()
        return token, sequence

    def _all_ended(self, history, finished, n: int) -> bool:
        if self.settings.stop:
            self._end_at_stops(history, finished, n)
            return bool(finished[:n].all())
        return all(self._staged(1, n))

    def _stage(self, token, finished) -> None:
        """Start copying this step's tokens and end flags to the host (see `_staged`)."""
        self.staged[0].copy_(token, non_blocking=True)
        self.staged[1].copy_(finished, non_blocking=True)
        if self.staged_event is not None:
            self.staged_event.record()

    def _staged(self, which: int, n: int) -> list[int]:
        """The staged tokens (0) or end flags (1) of the first n rows, once their copy is done."""
        if self.staged_event is not None:
            self.staged_event.synchronize()
        return self.staged[which, :n].tolist()

    def _advance(self) -> None:
        """Queue the next one-token step (capturing its graph the first time) and move to the next slot."""
        if self.use_graph and self.graph is None:
            with self.kernels():
                self.graph = self._capture(self._step)
        if self.graph is not None:
            self.graph.replay()
        else:
            with self.kernels():
                self._step()
        self.position.add_(1)
        self.slot.add_(1)

    def _prefill(self, rows: list[list[int]], first: list[int]):
        """Fill the cache with the prompts; (last-token logits, each row's last position).

        The cache holds every row as [pad | first part][pad | second part], both parts left-padded to
        their longest, so each part is one pass: the distinct first parts (shared prefixes) once, then
        every row's second part, attending to its own first part through the mask. Positions count
        each row's real tokens from 0, as `generate` numbers a left-padded row; the gaps are masked.
        A pass runs in chunks of rows of at most batching.TOKENS_PER_PASS tokens, so its activations
        stay small beside the cache, each chunk left-padded only to its own longest row (see
        `batching.passes`). Decoding continues in the slot after the second part.
        """
        dev, cache = self.device, self.cache
        width = first_width(first)
        self.valid.zero_()
        try:
            if width:
                self._prefill_prefixes(rows, first, width)
            ids, attention = (t.to(dev) for t in left_pad([p[k:] for p, k in zip(rows, first)], self.pad))
            positions = _positions(attention) + torch.tensor(first, device=dev)[:, None]
            end = width + ids.shape[1]
            self.valid[:, width:end] = attention.bool()
            logits = []
            for lo, hi, w in passes([len(p) - k for p, k in zip(rows, first)]):
                cache.window = slice(lo, hi)
                cache.positions = torch.arange(end - w, end, device=dev)
                logits.append(
                    self._forward(
                        ids[lo:hi, -w:], positions[lo:hi, -w:], self._mask(self.valid[lo:hi], cache.positions)
                    ).float()
                )
        finally:
            cache.scatter, cache.window = None, slice(None)
        self.slot.fill_(end)
        return torch.cat(logits), positions[:, -1:]

    def _prefill_prefixes(self, rows: list[list[int]], first: list[int], width: int) -> None:
        """The first pass of `_prefill`: each distinct first part once, written to every row that
        starts with it."""
        dev, cache = self.device, self.cache
        heads = [tuple(p[:k]) for p, k in zip(rows, first)]
        distinct = list(dict.fromkeys(heads))
        index = {h: i for i, h in enumerate(distinct)}
        group = [index[h] for h in heads]
        ids, attention = (t.to(dev) for t in left_pad([list(h) for h in distinct], self.pad, width))
        self.valid[:, :width] = attention.bool().index_select(0, torch.tensor(group, device=dev))
        for lo, hi, w in passes([len(h) for h in distinct]):
            cache.scatter = (_runs(group, lo, hi), slice(width - w, width))
            cache.positions = torch.arange(width - w, width, device=dev)
            seen = attention[lo:hi, width - w :]
            # The pass attends to its own keys only: slots 0 … w-1 of its mask.
            self._forward(
                ids[lo:hi, width - w :], _positions(seen), self._mask(seen.bool(), torch.arange(w, device=dev))
            )
        cache.scatter = None

    def _prefill_chunks(self, prompt: list[int]):
        """`_prefill` of one row as replays of a graph over PREFILL_CHUNK tokens (`_prefill` itself
        when the graph cannot be captured).

        Chunk k holds prompt tokens k·C … k·C+C-1 at the slots and positions of those numbers, and
        attends to the slots before it through the mask. The last chunk's tail past the prompt is
        padding: its slots (clamped to the cache) are not marked valid, so no query reads them
        before a step writes its own token there."""
        n, size, dev = len(prompt), PREFILL_CHUNK, self.device
        self.valid.zero_()
        self.valid[0, :n] = True
        if self.chunk is None:
            self.chunk = self._capture_chunk()
            if self.chunk is None:
                with self.kernels():
                    return self._prefill([prompt], [0])
        graph, ids, slots, last, logits = self.chunk
        tokens = torch.tensor(prompt + [self.pad] * (-n % size), device=dev).view(-1, size)
        every = torch.arange(tokens.numel(), device=dev).clamp_(max=self.max_len - 1).view(-1, size)
        for k in range(tokens.shape[0]):
            ids.copy_(tokens[k : k + 1])
            slots.copy_(every[k])
            last.fill_(min(size, n - k * size) - 1)
            graph.replay()
        self.slot.fill_(n)
        return logits.clone(), torch.full((1, 1), n - 1, device=dev)

    def _capture_chunk(self):
        """The prefill chunk's graph and its buffers (graph, ids, slots, last, logits), or None when
        it cannot be captured."""
        size, dev = PREFILL_CHUNK, self.device
        ids, slots, last = (
            torch.zeros((1, size), dtype=torch.long, device=dev),
            torch.arange(size, device=dev).clamp_(max=self.max_len - 1),
            torch.full((1,), size - 1, device=dev),
        )
        held = []  # the last prompt token's logits, allocated by the first (uncaptured) run

        def body():
            self.cache.positions = slots
            out = self._forward(ids, slots[None], self._mask(self.valid, slots), logits_to_keep=last)
            if held:
                held[0].copy_(out)
            else:
                held.append(out.float().clone())

        with self.kernels():
            graph = self._capture(body)
        return None if graph is None else (graph, ids, slots, last, held[0])

    def _end_at_stops(self, history, finished, n: int) -> None:
        tokens = torch.stack(history, dim=1)[:n].tolist()
        done = finished[:n].tolist()
        hits = [i for i in range(n) if not done[i] and holds_stop(self.tokenizer, tokens[i], self.settings.stop)]
        if hits:
            finished[torch.tensor(hits, device=self.device)] = True


def _runs(group: list[int], lo: int, hi: int) -> list[tuple[int, int, int]]:
    """(first row, end row, prefix - lo) of every run of neighbouring rows whose prefix (`group[row]`)
    is one of lo … hi-1."""
    runs: list[tuple[int, int, int]] = []
    for row, g in enumerate(group):
        if not lo <= g < hi:
            continue
        if runs and runs[-1][1] == row and runs[-1][2] == g - lo:
            runs[-1] = (runs[-1][0], row + 1, g - lo)
        else:
            runs.append((row, row + 1, g - lo))
    return runs


def _positions(attention):
    """Position ids of left-padded rows: 0 at each row's first real token (pads get 1, as in `generate`)."""
    return (attention.cumsum(-1) - 1).masked_fill_(attention == 0, 1)
