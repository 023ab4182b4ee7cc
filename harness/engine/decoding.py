"""Decoding over a fixed-shape KV cache, with the one-token step replayed as a CUDA graph.

`model.generate` rebuilds masks, positions and cache bookkeeping in Python for every token and
synchronises with the GPU to test for the end; on a GPU machine with a slow CPU that launch
overhead, not the GPU, sets the pace of decoding. Here a batch is prefilled once, then every
step runs on static buffers (token, positions, a [batch, max_len] mask over one preallocated
cache), so the same kernels can be captured once and replayed. A one-row decoder (a streamed
answer) prefills the same way, in replays of a graph over a fixed chunk of prompt tokens: eagerly
its prefill is bound by the CPU, not the GPU. Logits processors (repetition
penalty, n-gram ban, min_new_tokens, temperature/top-k/top-p) are transformers' own classes,
applied in the order `generate` applies them, so greedy answers equal `generate`'s.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from harness.config.generation import GenerationSettings
from harness.engine import fused

# Prompt tokens per prefill forward: big enough for the matmuls to run at full speed, small enough
# that the activations (a few GB on a 7B model) fit beside a cache sized for decoding.
TOKENS_PER_PASS = 32768

# A one-row decoder's prefill chunk. Eagerly a prompt's prefill costs ~80 ms of Python and launches
# on a GPU machine's slow CPU for a 7B 4-bit model (bitsandbytes' 4-bit matmul alone ~200 µs per
# call), whatever the prompt's length; a replay of the captured chunk costs ~12 ms of GPU time,
# mostly dequantizing the weights once.
PREFILL_CHUNK = 256


def supported(model, settings: GenerationSettings) -> str:
    """Why this decoder cannot run `settings` on `model` ("" when it can)."""
    if settings.num_beams > 1:
        return "beam search"
    impl = getattr(model.config, "_attn_implementation", None)
    if impl not in ("sdpa", "eager"):
        return f"attention implementation {impl}"
    if getattr(model.config, "sliding_window", None) or (
        getattr(model.config, "layer_types", None) and any(t != "full_attention" for t in model.config.layer_types)
    ):
        return "sliding-window attention"
    from harness.model.families import explicit_mask_mismatch

    return explicit_mask_mismatch(model)


def end_ids(model, tokenizer) -> list[int]:
    """The tokens that end an answer: the tokenizer's eos and those the model's generation config
    names, on which `generate` stops by default (an instruction-tuned Llama-3 or Qwen2 ends a turn
    on one token and a text on another)."""
    ids = []
    for source in (tokenizer.eos_token_id, getattr(getattr(model, "generation_config", None), "eos_token_id", None)):
        ids += source if isinstance(source, list) else [source]
    return list(dict.fromkeys(i for i in ids if i is not None))


def text_config(model):
    """The decoder's config (a multimodal model nests it)."""
    config = model.config
    return config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config


def left_pad(rows: list[list[int]], pad: int, width: int | None = None):
    """(input ids, attention mask) tensors of `rows` padded on the left to `width` (the longest row)."""
    import torch

    width = width or max(len(r) for r in rows)
    return (
        torch.tensor([[pad] * (width - len(r)) + r for r in rows]),
        torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows]),
    )


def _stderr(message: str) -> None:
    from harness.runtime.console import terminal

    print(message, file=terminal())


def _slot_cache(num_layers: int):
    """A transformers Cache whose layers write keys/values at positions the decoder sets."""
    from transformers.cache_utils import Cache, CacheLayerMixin

    class SlotLayer(CacheLayerMixin):
        is_compileable = True
        is_sliding = False

        def __init__(self, owner):
            super().__init__()
            self.owner = owner

        def lazy_initialization(self, key_states, value_states):
            import torch

            shape = (self.owner.rows, key_states.shape[1], self.owner.max_len)
            self.keys = torch.zeros(*shape, key_states.shape[-1], dtype=key_states.dtype, device=key_states.device)
            self.values = torch.zeros(
                *shape, value_states.shape[-1], dtype=value_states.dtype, device=value_states.device
            )
            self.heads = torch.arange(key_states.shape[1], device=key_states.device)
            self.is_initialized = True

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            owner = self.owner
            if owner.scatter is not None:
                # A pass over distinct prefixes: each one's keys/values go to every row that starts with
                # it, and attention needs only the prefixes themselves.
                rows, source = owner.scatter
                where = (rows[:, None, None], self.heads[None, :, None], owner.positions[None, None, :])
                self.keys.index_put_(where, key_states.index_select(0, source))
                self.values.index_put_(where, value_states.index_select(0, source))
                return key_states, value_states
            keys, values = self.keys[owner.window], self.values[owner.window]  # views: a range of rows
            keys.index_copy_(2, owner.positions, key_states)
            values.index_copy_(2, owner.positions, value_states)
            return keys, values

        def get_mask_sizes(self, *args, **kwargs):
            return self.owner.max_len, 0

        def get_seq_length(self, *args, **kwargs):
            return 0

        def get_max_length(self):
            return self.owner.max_len

        def get_max_cache_shape(self, *args, **kwargs):
            return self.owner.max_len

        def reset(self):
            pass

    class SlotCache(Cache):
        def __init__(self):
            self.positions = None  # the slots this forward writes
            self.window = slice(None)  # the rows it computes
            self.scatter = None  # in a pass over distinct prefixes: (rows to write, each one's prefix)
            self.rows = 0
            self.max_len = 0
            super().__init__(layers=[SlotLayer(self) for _ in range(num_layers)])

    return SlotCache()


def _step_kernels(device) -> str:
    """Which kernels run a one-query step's attention on `device`: "triton" (harness.engine.kernels.decode_attention),
    "efficient" (PyTorch's memory-efficient kernel, where Triton is missing) or "" (PyTorch's choice,
    off a GPU, where its kernels repeat anyway).

    PyTorch picks cuDNN's attention on Hopper; for one query per row it does not repeat (on an H200,
    8 identical calls differed by up to 1e-3), so greedy answers near a tie changed between two
    identical runs: 195 of 256 on a random-weight 7B, whose logits are near-uniform, and three of
    three streamed answers. harness.engine.kernels.decode_attention's kernels repeat exactly and were as fast as
    cuDNN or faster (`benchmarks/gpu.py attention`); the memory-efficient kernel repeats too, but took
    1.5× cuDNN's time at 256 rows and 2.4× at one row on an H100. cuDNN's prefill (many queries)
    repeats and stays."""
    if device.type != "cuda":
        return ""
    return "triton" if fused.triton_installed() else "efficient"


def _step_attention(device):
    """The context a one-query step's attention runs in (see `_step_kernels`)."""
    kernels = _step_kernels(device)
    if kernels == "triton":
        from harness.engine.attention import one_query_steps

        return one_query_steps()
    if kernels == "efficient":
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])
    return contextlib.nullcontext()


def step_attention_note(model) -> str:
    """What runs a decoding step's attention on `model` (see `_step_kernels`), for the engine line;
    "" off a GPU."""
    try:
        kernels = _step_kernels(next(model.parameters()).device)
    except StopIteration:
        return ""
    notes = {
        "triton": "decoding steps' attention in reproducible Triton kernels",
        "efficient": "decoding steps' attention in PyTorch's memory-efficient kernel (reproducible)",
    }
    return notes.get(kernels, "")


def cache_length(slots: int) -> int:
    """The slots a cache for `slots` holds: a multiple of 16."""
    return -(-slots // 16) * 16


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
        import torch

        self.model, self.tokenizer, self.settings = model, tokenizer, settings
        self.batch, self.max_len = batch, cache_length(slots)
        max_len = self.max_len
        self.device = next(model.parameters()).device
        self.use_graph = self.device.type == "cuda"
        self.log = log or _stderr
        self.cache = _slot_cache(text_config(model).num_hidden_layers)
        self.cache.max_len, self.cache.rows = max_len, batch
        dev = self.device
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
        self.processors = None  # per batch: the penalty must know each row's padding (see `run`)
        self.kernels = (lambda: fused.fused_kernels(model)) if fused.available(model) else contextlib.nullcontext
        # Each step's tokens and end flags, copied to the host before the next step is queued (see `run`).
        self.staged = torch.zeros((2, batch), dtype=torch.long, pin_memory=self.use_graph)
        self.staged_event = torch.cuda.Event() if self.use_graph else None

    def close(self) -> None:
        """Free the cache and the graph now (the cache's layers and owner refer to each other, so
        dropping the decoder alone would leave the memory to the next garbage collection)."""
        for layer in self.cache.layers:
            layer.keys = layer.values = None
            layer.is_initialized = False
        self.graph = self.chunk = None

    def _activation_dtype(self):
        import torch

        embed = self.model.get_input_embeddings()
        return embed.weight.dtype if embed.weight.dtype in (torch.float16, torch.bfloat16) else torch.float32

    def _mask(self, valid, query_slots):
        """Additive [rows, 1, queries, slots] mask: a query sees valid slots up to its own."""
        import torch

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
        with _step_attention(self.device):
            logits = self._forward(self.token, self.position, self._mask(self.valid, self.slot))
        if self.logits is None:
            self.logits = logits.float().clone()
        else:
            self.logits.copy_(logits)

    def _capture(self, body: Callable[[], None]):
        """`body` (which reads and writes only static buffers) captured as a CUDA graph, or None
        (and no more graphs) when capture fails."""
        import torch

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
            self.log(f"decoding without CUDA graphs: capture failed ({str(exc).splitlines()[0][:120]})")
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
        import torch

        from harness.engine.prefixes import slots, split

        s = self.settings
        n = len(prompts)
        first = split(prompts, shared)
        need = slots(prompts, first, s.max_new_tokens)
        if need > self.max_len:
            raise ValueError(f"batch needs {need} slots, the cache has {self.max_len}")
        # The cheapest prompt to prefill fills the rows a graph's fixed batch has beyond the prompts.
        filler = min(range(n), key=lambda i: len(prompts[i]) - first[i])
        rows, first = (prompts + [prompts[filler]] * (self.batch - n), first + [first[filler]] * (self.batch - n))
        with torch.inference_mode():
            if self.use_graph and self.batch == 1 and not any(first) and len(rows[0]) > 0:
                logits, last = self._prefill_chunks(rows[0])
            else:
                with self.kernels():
                    logits, last = self._prefill(rows, first)
            self.position.copy_(last + 1)
            self.processors = _processors(s, _padding(rows, self.device))
            sequence = left_pad(rows, self.pad)[0].to(self.device) if self.processors else None
            finished = torch.zeros(self.batch, dtype=torch.bool, device=self.device)
            history = []
            for step in range(s.max_new_tokens):
                if step > 0:
                    logits = self.logits
                token = self._choose(sequence, logits, step)
                token = torch.where(finished, torch.full_like(token, self.pad), token)
                finished |= torch.isin(token, self.eos)
                self.token.copy_(token[:, None])
                if sequence is not None:
                    sequence = torch.cat([sequence, token[:, None]], dim=1)
                history.append(token)
                self._stage(token, finished)
                if step + 1 < s.max_new_tokens:
                    # The next step is queued before this token goes to the caller: the GPU computes it
                    # while the caller reads the token and streams its text. The token was staged on
                    # the host before, so reading it waits for this step only, not the queued one.
                    # At most one step is wasted when the caller then stops.
                    self._advance()
                yield self._staged(0, n) if on_host else token[:n]
                if should_stop is not None and should_stop():
                    return
                # Testing for the end waits for the GPU; every 8 steps is often enough.
                if (step + 1) % 8 == 0:
                    if s.stop:
                        self._end_at_stops(history, finished, n)
                        if bool(finished[:n].all()):
                            return
                    elif all(self._staged(1, n)):
                        return

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
        A pass runs in chunks of rows of at most TOKENS_PER_PASS tokens, so its activations stay
        small beside the cache, each chunk left-padded only to its own longest row (see `_passes`).
        Decoding continues in the slot after the second part.
        """
        import torch

        from harness.engine.prefixes import first_width

        dev, cache = self.device, self.cache
        heads = [tuple(p[:k]) for p, k in zip(rows, first)]
        distinct = list(dict.fromkeys(heads))
        width = first_width(first)
        self.valid.zero_()
        try:
            if width:
                index = {h: i for i, h in enumerate(distinct)}
                group = torch.tensor([index[h] for h in heads])
                ids, attention = (t.to(dev) for t in left_pad([list(h) for h in distinct], self.pad, width))
                self.valid[:, :width] = attention.bool().index_select(0, group.to(dev))
                for lo, hi, w in _passes([len(h) for h in distinct]):
                    members = ((group >= lo) & (group < hi)).nonzero().squeeze(1)
                    cache.scatter = (members.to(dev), (group[members] - lo).to(dev))
                    cache.positions = torch.arange(width - w, width, device=dev)
                    seen = attention[lo:hi, width - w :]
                    # The pass attends to its own keys only: slots 0 … w-1 of its mask.
                    self._forward(
                        ids[lo:hi, width - w :], _positions(seen), self._mask(seen.bool(), torch.arange(w, device=dev))
                    )
                cache.scatter = None
            ids, attention = (t.to(dev) for t in left_pad([p[k:] for p, k in zip(rows, first)], self.pad))
            positions = _positions(attention) + torch.tensor(first, device=dev)[:, None]
            end = width + ids.shape[1]
            self.valid[:, width:end] = attention.bool()
            logits = []
            for lo, hi, w in _passes([len(p) - k for p, k in zip(rows, first)]):
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

    def _prefill_chunks(self, prompt: list[int]):
        """`_prefill` of one row as replays of a graph over PREFILL_CHUNK tokens (`_prefill` itself
        when the graph cannot be captured).

        Chunk k holds prompt tokens k·C … k·C+C-1 at the slots and positions of those numbers, and
        attends to the slots before it through the mask. The last chunk's tail past the prompt is
        padding: its slots (clamped to the cache) are not marked valid, so no query reads them
        before a step writes its own token there."""
        import torch

        n, size, dev = len(prompt), PREFILL_CHUNK, self.device
        self.valid.zero_()
        self.valid[0, :n] = True
        if self.chunk is None:
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
                if graph is None:
                    return self._prefill([prompt], [0])
            self.chunk = (graph, ids, slots, last, held[0])
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

    def _end_at_stops(self, history, finished, n: int) -> None:
        import torch

        from harness.engine.generation import cut_at_stop

        tokens = torch.stack(history, dim=1)[:n].tolist()
        done = finished[:n].tolist()
        hits = [
            i
            for i in range(n)
            if not done[i]
            and cut_at_stop(self.tokenizer.decode(tokens[i], skip_special_tokens=True), self.settings.stop)[1]
        ]
        if hits:
            finished[torch.tensor(hits, device=self.device)] = True

    def _choose(self, sequence, logits, step: int):
        import torch

        if step < self.settings.min_new_tokens:  # transformers' MinNewTokensLengthLogitsProcessor
            logits = logits.index_fill(1, self.eos, -float("inf"))
        scores = self.processors(sequence, logits) if self.processors else logits
        if self.settings.do_sample:
            return torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)
        return scores.argmax(dim=-1)


def _passes(lengths: list[int]) -> list[tuple[int, int, int]]:
    """(first, end, width) row ranges of a prefill: each pass holds at most TOKENS_PER_PASS tokens
    (one row at least) and is left-padded only to its own longest row, `width`. A batch runs longest
    prompts first, so a pass of short rows does not compute the padding of the batch's longest: the
    first 64 of 1,024 KorQuAD prompts run from 1,054 tokens down to 351."""
    out, lo = [], 0
    while lo < len(lengths):
        hi, width = lo + 1, max(lengths[lo], 1)
        while hi < len(lengths) and (hi + 1 - lo) * max(width, lengths[hi]) <= TOKENS_PER_PASS:
            width = max(width, lengths[hi])
            hi += 1
        out.append((lo, hi, width))
        lo = hi
    return out


def _positions(attention):
    """Position ids of left-padded rows: 0 at each row's first real token (pads get 1, as in `generate`)."""
    return (attention.cumsum(-1) - 1).masked_fill_(attention == 0, 1)


def _padding(rows: list[list[int]], device):
    """How many pad tokens `left_pad` puts before each row."""
    import torch

    width = max(len(r) for r in rows)
    return torch.tensor([width - len(r) for r in rows], device=device)


def _processors(settings: GenerationSettings, padding):
    """transformers' logits processors for `settings`, in `generate`'s order (empty for plain greedy).

    `padding`: each row's left padding, which the repetition penalty must not count as text the row
    holds (`generate` passes the same from the attention mask): where a tokenizer has no pad token the
    padding is eos, and a padded row would be pushed away from ending where it would end alone.
    min_new_tokens is applied by the decoder itself: it only bans eos, whatever the order."""
    from transformers import LogitsProcessorList
    from transformers.generation.logits_process import (
        NoRepeatNGramLogitsProcessor,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    s = settings
    chain = LogitsProcessorList()
    if s.repetition_penalty != 1.0:
        chain.append(RepetitionPenaltyLogitsProcessor(penalty=s.repetition_penalty, prompt_ignore_length=padding))
    if s.no_repeat_ngram_size:
        chain.append(NoRepeatNGramLogitsProcessor(s.no_repeat_ngram_size))
    if s.do_sample:
        if s.temperature != 1.0:
            chain.append(TemperatureLogitsWarper(s.temperature))
        if s.top_k:
            chain.append(TopKLogitsWarper(top_k=s.top_k, min_tokens_to_keep=1))
        if s.top_p < 1.0:
            chain.append(TopPLogitsWarper(top_p=s.top_p, min_tokens_to_keep=1))
    return chain
