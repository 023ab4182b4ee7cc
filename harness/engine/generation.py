"""Generation, batched and streamed: one engine for eval, generate and chat.

A list of prompts is planned into batches (harness.engine.batching: longest first, shared prefixes
together, sized to memory, dealt to processes, cut smaller after CUDA runs out of memory) and each
batch decoded on the static-cache decoder (harness.engine.decoding) where it supports the model and
settings, else by transformers' `generate` (harness.engine.plain); answers are cut at end tokens and
stop strings by harness.engine.text.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import replace

import torch
from peft.tuners.lora import LoraLayer

from harness.config.generation import GenerationSettings
from harness.engine import plain, prefixes
from harness.engine.batching import Batch, Planner, deal, free_cuda_bytes, longest_first, on_cuda
from harness.engine.decoding import StaticDecoder
from harness.engine.model_info import context_length, end_ids, supported
from harness.engine.requests import Generated, GenerationRequest, RunOptions
from harness.engine.text import Detokenizer, Shown, decode_answer, encode_for, encode_prompts
from harness.errors import first_line
from harness.runtime.env import release_cuda_memory

# context_length and encode_prompts are imported from here by harness.generate and the chat.
__all__ = ["context_length", "encode_prompts", "generate", "generate_stream"]


def generate(
    model,
    tokenizer,
    requests: list[GenerationRequest],
    options: RunOptions,
    on_result: Callable[[int, Generated], None],
) -> None:
    """Generate for every request; `on_result(index, Generated)` is called as each batch finishes.

    engine "plain" calls `model.generate`; otherwise a static cache (CUDA graphs on a GPU) is used
    where `model_info.supported` allows. `batch_size` None on a GPU sizes each batch from free
    memory and the batch's length.

    `shard` (a `distributed.Dist` of several processes, each calling this with the same prompts):
    every process plans the batches of all prompts alike, then runs its share of whole batches, each
    on the cache a single process would give it. A prompt then meets the same rows, shapes and
    kernels whatever the number of processes, so its greedy output equals a single process's.
    """
    settings, progress = options.settings, options.progress
    ids = [r.id or str(i) for i, r in enumerate(requests)]
    prompts = [r.prompt for r in requests]
    encoded = encode_for(model, tokenizer, prompts, ids, settings, options.chat)
    planner, order = _planner(model, encoded, options)
    queue = planner.cut(order)
    if options.shard is not None:
        queue = deal(queue, options.shard.rank, options.shard.world)
    torch.manual_seed(settings.seed)
    log = progress.write if progress is not None and hasattr(progress, "write") else None
    decoders = _Decoders(model, tokenizer, settings, log)
    while queue:
        planned = queue[0]
        started = time.perf_counter()
        try:
            results = decoders.run(planner, planned)
        except Exception as exc:  # torch.OutOfMemoryError is newer than our oldest torch
            if "out of memory" not in str(exc).lower() or len(planned.items) == 1:
                raise
            decoders.drop()
            release_cuda_memory()
            # What is left of this process's share is cut again, smaller.
            queue = planner.back_off(planned, queue)
            if progress is not None:
                progress.write(
                    f"CUDA out of memory ({first_line(exc, 120)}); generation batch size is now "
                    f"{planner.batch_size}" + (" (fewer rows from now on)" if planner.budget else "")
                )
            continue
        elapsed = time.perf_counter() - started
        for index, result in zip(planned.items, results):
            on_result(index, replace(result, time_s=elapsed, batch_size=len(planned.items)))
        if progress is not None:
            progress.update(len(planned.items))
        queue = queue[1:]


def _planner(model, encoded: list[list[int]], options: RunOptions) -> tuple[Planner, list[int]]:
    """How `encoded` is batched, and the order of its prompts: on the static cache with shared
    prefixes together (`prefixes.plan`), sized from free GPU memory when `batch_size` is None there."""
    settings = options.settings
    static = options.engine != "plain" and not supported(model, settings)
    order, shared = prefixes.plan(encoded) if static else (longest_first(encoded), [0] * len(encoded))
    budget = free_cuda_bytes() if static and options.batch_size is None and on_cuda(model) else None
    if options.shard is not None and budget is not None:
        budget = min(options.shard.all_gather(budget))  # every process must cut the same batches
    return Planner(model, encoded, shared, settings, options.batch_size or 1, budget, static), order


class _Decoders:
    """Runs planned batches: on the static-cache decoder, which consecutive batches of one cache
    shape share, or through `model.generate`."""

    def __init__(self, model, tokenizer, settings: GenerationSettings, log):
        self.model, self.tokenizer, self.settings, self.log = model, tokenizer, settings, log
        self.decoder: StaticDecoder | None = None

    def run(self, planner: Planner, planned: Batch) -> list[Generated]:
        batch, shared = planner.rows(planned.items)
        if not planner.static:
            return plain.generate_batch(self.model, self.tokenizer, batch, self.settings)
        decoder = self._decoder(planned.cache)
        steps = list(decoder.run(batch, shared=shared))
        rows = torch.stack(steps, dim=1).tolist() if steps else [[] for _ in batch]
        ends = end_ids(self.model, self.tokenizer)
        return [decode_answer(self.tokenizer, row, len(p), self.settings, ends) for row, p in zip(rows, batch)]

    def _decoder(self, cache: tuple[int, int]) -> StaticDecoder:
        if self.decoder is not None and (self.decoder.batch, self.decoder.max_len) != cache:
            self.drop()
            if on_cuda(self.model):
                torch.cuda.empty_cache()
        if self.decoder is None:
            self.decoder = StaticDecoder(self.model, self.tokenizer, self.settings, *cache, log=self.log)
        return self.decoder

    def drop(self) -> None:
        if self.decoder is not None:
            self.decoder.close()
        self.decoder = None


def generate_stream(
    model,
    tokenizer,
    prompt: str,
    settings: GenerationSettings,
    on_text: Callable[[str], None],
    should_stop: Callable[[], bool] | None = None,
    prompt_id: str = "prompt",
    engine: str = "auto",
    chat: bool = False,
) -> Generated:
    """Generate for one prompt, passing text to `on_text` as it is produced.

    Same encoding, context check, decoder choice and decoding/stop handling as `generate`, so a
    greedy answer equals the batched one. Text that could be the start of a stop string is held
    back until it is known not to be one; the pieces passed to `on_text` join to exactly the
    returned `output`. `should_stop()` returning True (e.g. set by a SIGINT handler) ends the
    answer early with stop_reason "interrupted".
    """
    encoded = encode_for(model, tokenizer, [prompt], [prompt_id], settings, chat)[0]
    shown = Shown(settings.stop, on_text)
    torch.manual_seed(settings.seed)
    started = time.perf_counter()
    if engine != "plain" and not supported(model, settings):
        tokens = _stream_static(model, tokenizer, encoded, settings, shown, should_stop)
    else:
        tokens = plain.stream_generate(model, tokenizer, encoded, settings, shown, should_stop)
    elapsed = time.perf_counter() - started
    result = decode_answer(tokenizer, tokens, len(encoded), settings, end_ids(model, tokenizer))
    if (
        should_stop
        and should_stop()
        and result.stop_reason == "length"
        and result.generated_tokens < settings.max_new_tokens
    ):
        result = replace(result, stop_reason="interrupted")
    shown.finish(result.output)
    return replace(result, time_s=elapsed)


def _stream_static(
    model, tokenizer, encoded: list[int], settings: GenerationSettings, shown: Shown, should_stop
) -> list[int]:
    decoder = _stream_decoder(model, tokenizer, settings, len(encoded) + settings.max_new_tokens)
    eos_ids = set(end_ids(model, tokenizer))
    text = Detokenizer(tokenizer, shown)
    tokens: list[int] = []
    hit = False
    for step in decoder.run(
        [encoded],
        should_stop=lambda: hit or bool(should_stop and should_stop()),  # noqa: B023
        on_host=True,
    ):
        token = step[0]
        tokens.append(token)
        if token in eos_ids:
            break
        hit = text.feed(tokens) or hit
    return tokens


STREAM_SLOTS = 128  # a streamed answer's cache is a whole number of these, so similar lengths share it


def _stream_decoder(model, tokenizer, settings: GenerationSettings, need: int) -> StaticDecoder:
    """The batch-1 decoder for a streamed answer: the model's previous one where it still fits (its
    graph is captured: a chat's next answer skips the capture), else a new one kept for next time.

    A captured graph computes with the addresses of the weights and adapter it was captured with, so
    the previous decoder is only taken when the model's parameters, its LoRA switches (which adapter,
    on or off), the settings, the tokenizer and the fused-kernel switch are all the same."""
    key = _stream_key(model, tokenizer, settings)
    slots = -(-need // STREAM_SLOTS) * STREAM_SLOTS
    kept = getattr(model, "_harness_stream_decoder", None)
    if kept is not None and kept[0] == key and kept[1].max_len == slots:
        return kept[1]
    if kept is not None:
        kept[1].close()
    decoder = StaticDecoder(model, tokenizer, settings, 1, slots)
    model._harness_stream_decoder = (key, decoder)
    return decoder


def _stream_key(model, tokenizer, settings: GenerationSettings) -> tuple:
    # One walk over the modules, and no failing attribute lookups: this runs before every streamed
    # answer, and on a GPU machine's slow CPU a 7B adapted model's ~1,700 modules cost milliseconds.
    weights, lora = [], []
    for module in model.modules():
        weights += [p.data_ptr() for p in module._parameters.values() if p is not None]
        if isinstance(module, LoraLayer):
            lora.append((module.disable_adapters, tuple(module.active_adapters), module.merged))
    return (
        tuple(weights),
        tuple(lora),
        id(tokenizer),
        settings.model_dump_json(),
        os.environ.get("HARNESS_FUSED_KERNELS"),
    )
