"""Batched generation: length-sorted, left-padded, stop strings honoured, OOM back-off.

One engine for eval, generate and chat. Prompts are sorted longest first so a batch that
does not fit fails at the start, not after an hour, and padding stays small.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from harness.config.generation import GenerationSettings
from harness.engine import prefixes
from harness.errors import HarnessError
from harness.runtime.env import release_cuda_memory


@dataclass(frozen=True)
class Generated:
    output: str  # decoded new text, cut at the first stop string
    prompt_tokens: int
    generated_tokens: int
    stop_reason: str  # stop | eos | length | interrupted
    time_s: float = 0.0  # wall time of the batch (or the single streamed answer) that produced it
    batch_size: int = 1


def context_length(model) -> int | None:
    config = model.config
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def encode_prompts(
    tokenizer, prompts: list[str], ids: list[str], settings: GenerationSettings, limit: int | None, chat: bool = False
):
    """Token ids of `prompts`. `chat`: the prompts were rendered by the tokenizer's chat template, which
    writes the special tokens it wants (BOS included) itself; they are tokenized as
    `apply_chat_template(tokenize=True)` does, without adding them again (two BOS on Llama, Mistral, Gemma)."""
    # The context check below names the prompt and the fix; transformers' own warning would be a second line.
    warned = getattr(tokenizer, "deprecation_warnings", None)
    if isinstance(warned, dict):
        warned["sequence-length-is-longer-than-the-specified-maximum"] = True
    encoded = tokenizer(list(prompts), add_special_tokens=not chat)["input_ids"] if prompts else []
    if limit:
        for sample_id, tokens in zip(ids, encoded):
            if len(tokens) + settings.max_new_tokens > limit:
                raise HarnessError(
                    f"prompt '{sample_id}' has {len(tokens)} tokens; with max_new_tokens={settings.max_new_tokens} "
                    f"it exceeds the model's context of {limit}; shorten the prompt or lower max_new_tokens"
                )
    return encoded


@dataclass(frozen=True)
class Batch:
    """A batch as it runs: its prompts (indices, in row order) and, on the static-cache engine, the
    cache it runs on: (rows, slots). Consecutive batches of one cache reuse it."""

    items: tuple[int, ...]
    cache: tuple[int, int] | None = None


def generate(
    model,
    tokenizer,
    prompts: list[str],
    settings: GenerationSettings,
    batch_size: int,
    on_result: Callable[[int, Generated], None],
    ids: list[str] | None = None,
    progress=None,
    engine: str = "auto",
    auto_batch: bool = False,
    shard=None,
    chat: bool = False,
) -> None:
    """Generate for every prompt; `on_result(index, Generated)` is called as each batch finishes.

    engine "plain" calls `model.generate`; otherwise a static cache (CUDA graphs on a GPU) is used
    where `decoding.supported` allows. `auto_batch` on a GPU sizes each batch from free memory
    and the batch's length instead of `batch_size`.

    `shard` (a `distributed.Dist` of several processes, each calling this with the same prompts):
    every process plans the batches of all prompts alike, then runs its share of whole batches, each
    on the cache a single process would give it. A prompt then meets the same rows, shapes and
    kernels whatever the number of processes, so its greedy output equals a single process's.
    """
    import torch

    from harness.engine import decoding
    from harness.engine.decoding import StaticDecoder

    ids = ids or [str(i) for i in range(len(prompts))]
    encoded = encode_prompts(tokenizer, prompts, ids, settings, context_length(model), chat)
    static = engine != "plain" and not decoding.supported(model, settings)
    if static:
        order, shared = prefixes.plan(encoded)
    else:
        order, shared = sorted(range(len(prompts)), key=lambda i: (-len(encoded[i]), i)), [0] * len(prompts)
    log = progress.write if progress is not None and hasattr(progress, "write") else None
    budget = _free_cuda_bytes() if static and auto_batch and _on_cuda(model) else None
    if shard is not None and budget is not None:
        budget = min(shard.all_gather(budget))  # every process must cut the same batches
    queue = cut_batches(model, encoded, shared, order, settings, batch_size, budget, static)
    if shard is not None:
        queue = deal(queue, shard.rank, shard.world)
    torch.manual_seed(settings.seed)
    decoder = None
    while queue:
        planned = queue[0]
        batch, batch_shared = _rows(encoded, shared, planned.items)
        started = time.perf_counter()
        try:
            if static:
                if decoder is not None and (decoder.batch, decoder.max_len) != planned.cache:
                    decoder.close()
                    decoder = None
                    if _on_cuda(model):
                        torch.cuda.empty_cache()
                if decoder is None:
                    decoder = StaticDecoder(model, tokenizer, settings, *planned.cache, log=log)
                results = _static_batch(decoder, tokenizer, batch, batch_shared, settings)
            else:
                results = _generate_batch(model, tokenizer, batch, settings)
        except Exception as exc:  # torch.OutOfMemoryError is newer than our oldest torch
            if "out of memory" not in str(exc).lower() or len(planned.items) == 1:
                raise
            if decoder is not None:
                decoder.close()
            decoder = None
            release_cuda_memory()
            batch_size = max(1, len(planned.items) // 2)
            if budget is not None:
                # Automatic sizes come from the memory budget: shrink that, so the shorter batches
                # later on still get sizes that fit them.
                budget = budget * 2 // 3
            # What is left of this process's share is cut again, smaller.
            queue = cut_batches(
                model, encoded, shared, [i for b in queue for i in b.items], settings, batch_size, budget, static
            )
            if progress is not None:
                progress.write(
                    f"CUDA out of memory ({str(exc).splitlines()[0][:120]}); "
                    f"generation batch size is now {batch_size}" + (" (fewer rows from now on)" if budget else "")
                )
            continue
        elapsed = time.perf_counter() - started
        for index, result in zip(planned.items, results):
            on_result(index, replace(result, time_s=elapsed, batch_size=len(planned.items)))
        if progress is not None:
            progress.update(len(planned.items))
        queue = queue[1:]


def cut_batches(
    model,
    encoded: list[list[int]],
    shared: list[int],
    order: list[int],
    settings: GenerationSettings,
    batch_size: int,
    budget: int | None,
    static: bool,
) -> list[Batch]:
    """`order` cut into batches of `batch_size`, or sized from the memory `budget`, each with the
    static cache it runs on (None off that engine)."""
    from harness.engine.decoding import cache_length

    cuda = _on_cuda(model)
    batches: list[Batch] = []
    cache = None
    start = 0
    while start < len(order):
        size = batch_size
        if budget is not None:
            size = auto_batch_size(model, len(encoded[order[start]]) + settings.max_new_tokens, budget)
            # Rows sharing a prefix sit in the cache as [prefix][rest]: a batch may need more slots
            # than its longest prompt.
            need = prefixes.slots_needed(*_rows(encoded, shared, order[start : start + size]), settings.max_new_tokens)
            size = min(size, auto_batch_size(model, need, budget))
        items = tuple(order[start : start + size])
        if static:
            # On a GPU a short last batch is padded to a power of two: a graph's shape is fixed.
            rows = 1 << (len(items) - 1).bit_length() if cuda else len(items)
            need = prefixes.slots_needed(*_rows(encoded, shared, items), settings.max_new_tokens)
            if cache is None or not _reusable(cache, rows, need):
                cache = (rows, cache_length(need))
        batches.append(Batch(items, cache if static else None))
        start += len(items)
    return batches


def _reusable(cache: tuple[int, int], rows: int, need: int) -> bool:
    """Whether a batch of `rows` rows needing `need` slots can run on `cache` (rows, slots) without
    much waste. Batches come longest first, so a cache sized for the first batch fits all; it is
    rebuilt when a batch needs under 3/4 of it (attention reads every slot) or has another size."""
    cache_rows, slots = cache
    return need <= slots and 4 * need >= 3 * slots and cache_rows == rows


def deal(batches: list[Batch], rank: int, world: int) -> list[Batch]:
    """Process `rank`'s share of `batches`: each batch, costliest first, goes to the process with the
    least work so far (ties: the lowest rank). A share keeps the batches' order."""

    def cost(b: Batch) -> int:
        # A decoding step reads every slot of every row of the cache; off the static cache, prompts.
        return b.cache[0] * b.cache[1] if b.cache else len(b.items)

    load, mine = [0] * world, []
    for index in sorted(range(len(batches)), key=lambda i: (-cost(batches[i]), i)):
        owner = min(range(world), key=lambda r: (load[r], r))
        load[owner] += cost(batches[index])
        if owner == rank:
            mine.append(index)
    return [batches[i] for i in sorted(mine)]


def auto_batch_size(model, slots: int, budget: int, cap: int = 256) -> int:
    """The largest power-of-two batch (≤ cap) whose KV cache of `slots` per row fits in 80% of
    `budget` bytes beside one prefill pass's activations (the decoder prefills in passes of at
    most decoding.TOKENS_PER_PASS tokens, whatever the batch)."""
    from harness.engine.decoding import TOKENS_PER_PASS, text_config

    config = text_config(model)
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    size = model.get_input_embeddings().weight.element_size()
    kv = 2 * config.num_hidden_layers * heads * head_dim * size * slots
    # A pass's activations: the MLP's, attention's and the float32 copies norms and LoRA make.
    prefill = TOKENS_PER_PASS * (config.hidden_size * 16 + config.intermediate_size * 4) * size
    per_row = kv + config.vocab_size * 8  # and each row's last logits, in float32 twice
    batch = cap
    while batch > 1 and batch * per_row + prefill > 0.8 * budget:
        batch //= 2
    return batch


def _free_cuda_bytes() -> int:
    import torch

    release_cuda_memory()
    return int(torch.cuda.mem_get_info()[0])


def _on_cuda(model) -> bool:
    return next(model.parameters()).device.type == "cuda"


def _rows(encoded: list[list[int]], shared: list[int], chunk: list[int]) -> tuple[list[list[int]], list[int]]:
    return [encoded[i] for i in chunk], [shared[i] for i in chunk]


def _static_batch(
    decoder, tokenizer, batch: list[list[int]], shared: list[int], settings: GenerationSettings
) -> list[Generated]:
    import torch

    steps = list(decoder.run(batch, shared=shared))
    rows = torch.stack(steps, dim=1).tolist() if steps else [[] for _ in batch]
    from harness.engine.decoding import end_ids

    ends = end_ids(decoder.model, tokenizer)
    return [_decode(tokenizer, row, len(prompt), settings, ends) for row, prompt in zip(rows, batch)]


def generation_kwargs(settings: GenerationSettings, tokenizer, ends: list[int] | None = None) -> dict:
    """`generate`'s arguments for `settings`; `ends`: the tokens that end an answer (`decoding.end_ids`)."""
    kwargs = dict(
        max_new_tokens=settings.max_new_tokens,
        min_new_tokens=settings.min_new_tokens or None,
        do_sample=settings.do_sample,
        num_beams=settings.num_beams,
        repetition_penalty=settings.repetition_penalty if settings.repetition_penalty != 1.0 else None,
        no_repeat_ngram_size=settings.no_repeat_ngram_size or None,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=ends or tokenizer.eos_token_id,
    )
    if settings.do_sample:
        kwargs.update(temperature=settings.temperature, top_p=settings.top_p, top_k=settings.top_k)
    else:
        # Greedy: neutral values so a model's own generation_config cannot turn sampling knobs on.
        kwargs.update(temperature=None, top_p=None, top_k=None)
    if settings.stop:
        kwargs.update(stop_strings=list(settings.stop), tokenizer=tokenizer)
    return {k: v for k, v in kwargs.items() if v is not None or k in {"temperature", "top_p", "top_k"}}


def _generate_batch(model, tokenizer, batch: list[list[int]], settings: GenerationSettings) -> list[Generated]:
    import torch

    from harness.engine.decoding import end_ids, left_pad

    ends = end_ids(model, tokenizer)
    input_ids, attention = left_pad(batch, tokenizer.pad_token_id)
    width = input_ids.shape[1]
    device = next(model.parameters()).device
    with torch.inference_mode():
        out = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention.to(device),
            **generation_kwargs(settings, tokenizer, ends),
        )
    results = []
    for row, prompt in zip(out[:, width:].tolist(), batch):
        results.append(_decode(tokenizer, row, len(prompt), settings, ends))
    return results


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
    import torch

    from harness.engine import decoding

    encoded = encode_prompts(tokenizer, [prompt], [prompt_id], settings, context_length(model), chat)[0]
    shown = _Shown(settings.stop, on_text)
    torch.manual_seed(settings.seed)
    started = time.perf_counter()
    if engine != "plain" and not decoding.supported(model, settings):
        tokens = _stream_static(model, tokenizer, encoded, settings, shown, should_stop)
    else:
        tokens = _stream_generate(model, tokenizer, encoded, settings, shown, should_stop)
    elapsed = time.perf_counter() - started
    result = _decode(tokenizer, tokens, len(encoded), settings, decoding.end_ids(model, tokenizer))
    if (
        should_stop
        and should_stop()
        and result.stop_reason == "length"
        and result.generated_tokens < settings.max_new_tokens
    ):
        result = replace(result, stop_reason="interrupted")
    shown.finish(result.output)
    return replace(result, time_s=elapsed)


class _Shown:
    """The text passed on so far: pieces that are known not to begin a stop string."""

    def __init__(self, stops: list[str], on_text: Callable[[str], None]):
        self.stops, self.on_text = stops, on_text
        self.received: list[str] = []
        self.shown: list[str] = []

    def feed(self, text: str) -> bool:
        """Take new text; True once a stop string has appeared."""
        self.received.append(text)
        cut, found = cut_at_stop("".join(self.received), self.stops)
        safe = cut if found else cut[: len(cut) - _held_back(cut, self.stops)]
        done = "".join(self.shown)
        if len(safe) > len(done) and safe.startswith(done):
            self.shown.append(safe[len(done) :])
            self.on_text(self.shown[-1])
        return found

    def finish(self, output: str) -> None:
        done = "".join(self.shown)
        if output.startswith(done) and len(output) > len(done):
            self.on_text(output[len(done) :])


def _stream_static(
    model, tokenizer, encoded: list[int], settings: GenerationSettings, shown: _Shown, should_stop
) -> list[int]:
    decoder = _stream_decoder(model, tokenizer, settings, len(encoded) + settings.max_new_tokens)
    from harness.engine.decoding import end_ids

    eos_ids = set(end_ids(model, tokenizer))
    tokens: list[int] = []
    text = ""
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
        decoded = tokenizer.decode(tokens, skip_special_tokens=True)  # the pieces join to `_decode`'s text
        # Byte-level BPE splits a Hangul syllable over tokens: wait until the character is whole.
        if not decoded.endswith("\ufffd") and len(decoded) > len(text):
            hit = shown.feed(decoded[len(text) :])
            text = decoded
    return tokens


STREAM_SLOTS = 128  # a streamed answer's cache is a whole number of these, so similar lengths share it


def _stream_decoder(model, tokenizer, settings: GenerationSettings, need: int):
    """The batch-1 decoder for a streamed answer: the model's previous one where it still fits (its
    graph is captured: a chat's next answer skips the capture), else a new one kept for next time.

    A captured graph computes with the addresses of the weights and adapter it was captured with, so
    the previous decoder is only taken when the model's parameters, its LoRA switches (which adapter,
    on or off), the settings, the tokenizer and the fused-kernel switch are all the same."""
    from harness.engine.decoding import StaticDecoder

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
    import os

    from peft.tuners.lora import LoraLayer

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


def _stream_generate(
    model, tokenizer, encoded: list[int], settings: GenerationSettings, shown: _Shown, should_stop
) -> list[int]:
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList, TextStreamer

    from harness.engine import decoding

    class _Streamer(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            if text:
                shown.feed(text)

    class _Interrupt(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            hit = bool(should_stop and should_stop())
            return torch.full((input_ids.shape[0],), hit, dtype=torch.bool, device=input_ids.device)

    device = next(model.parameters()).device
    with torch.inference_mode():
        out = model.generate(
            input_ids=torch.tensor([encoded], device=device),
            attention_mask=torch.ones((1, len(encoded)), dtype=torch.long, device=device),
            streamer=_Streamer(tokenizer, skip_prompt=True, skip_special_tokens=True),
            stopping_criteria=StoppingCriteriaList([_Interrupt()]),
            **generation_kwargs(settings, tokenizer, decoding.end_ids(model, tokenizer)),
        )
    return out[0, len(encoded) :].tolist()


def _held_back(text: str, stops: list[str]) -> int:
    """Length of the longest end of `text` that begins some stop string."""
    longest = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:n]):
                longest = n
                break
    return longest


def _decode(
    tokenizer, new_tokens: list[int], prompt_tokens: int, settings: GenerationSettings, ends: list[int] | None = None
) -> Generated:
    eos = ends or tokenizer.eos_token_id
    eos_ids = set(eos) if isinstance(eos, list) else {eos}
    stop_reason = "length"
    kept = []
    for token in new_tokens:
        if token in eos_ids:
            stop_reason = "eos"
            break
        kept.append(token)
    # A batch is padded after a sequence finishes; the pad id may equal eos (handled above).
    while kept and kept[-1] == tokenizer.pad_token_id and tokenizer.pad_token_id not in eos_ids:
        kept.pop()
        stop_reason = "eos"
    text = tokenizer.decode(kept, skip_special_tokens=True)
    cut, found = cut_at_stop(text, settings.stop)
    if found:
        stop_reason = "stop"
        # Generation ends at the token that completes the stop string; a decoder that tests for
        # stops only every few steps may have gone further, which must not count.
        while kept and cut_at_stop(tokenizer.decode(kept[:-1], skip_special_tokens=True), settings.stop)[1]:
            kept.pop()
    return Generated(output=cut, prompt_tokens=prompt_tokens, generated_tokens=len(kept), stop_reason=stop_reason)


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    positions = [text.find(s) for s in stops if s and s in text]
    if not positions:
        return text, False
    return text[: min(positions)], True
