"""One-token choices after shared few-shot prefixes (harness.engine.prefix_choices) score as a plain
transformers forward of each choice's row does, on several families, with and without a LoRA
adapter, and the decoder computes each distinct prefix once.

The requests are KMMLU's few-shot shape: every question gets an order of the same three solved
examples (as lm-evaluation-harness's sampler draws k of a pool of k), four one-token choices, and a
question of its own after the examples."""

from __future__ import annotations

import itertools

import pytest
from test_loglikelihood import reference

from harness.engine.requests import LoglikelihoodRequest, RunOptions

SHOTS = [
    f"다음 글을 읽고 물음에 답하시오. 예제 {n}: 서울은 한국의 수도이며 인구가 가장 많은 도시이다. "
    f"한강이 도시를 가로질러 흐른다. 이 예제의 번호는 {n}번이다.\nA. 서울\nB. 부산\nC. 대구\nD. 인천\n정답: {letter}"
    for n, letter in zip(range(1, 4), "ABC")
]
QUESTIONS = 12
TOLERANCE = dict(abs=1e-5, rel=1e-6)


def _requests(tokenizer) -> tuple[list[LoglikelihoodRequest], set[tuple[int, ...]]]:
    """12 questions × 4 one-token choices after the 6 orders of the 3 shots, plus a lone multi-token
    request (scored on the other path); and the distinct few-shot prefixes, as token ids."""
    orders = list(itertools.permutations(SHOTS))
    contexts = [
        "\n\n".join(
            [*orders[q % len(orders)], f"질문 {q}: 한국에서 {q}번째로 큰 도시는?\nA. 가\nB. 나\nC. 다\nD. 라\n정답:"]
        )
        for q in range(QUESTIONS)
    ]
    choices = _one_token_choices(tokenizer, contexts[0])
    requests = [LoglikelihoodRequest(c, x) for c in contexts for x in choices]
    requests.append(LoglikelihoodRequest("한국어는", " 재미있는 언어이다"))
    prefixes = {tuple(tokenizer("\n\n".join(order))["input_ids"][:-2]) for order in orders}
    return requests, prefixes


def _one_token_choices(tokenizer, context: str) -> list[str]:
    """Four continuations of `context` that are one token each for this tokenizer."""
    base = len(tokenizer(context)["input_ids"])
    found = [
        x
        for x in [" A", " B", " C", " D", "A", "B", "C", "D", " 가", " 나", " 다", " 라"]
        if len(tokenizer(context + x)["input_ids"]) == base + 1
    ]
    assert len(found) >= 4, found
    return found[:4]


@pytest.fixture
def prefill_spy(monkeypatch):
    """Every prefix the decoder's prefix pass computes (the real method runs)."""
    from harness.engine.decoding import StaticDecoder

    seen: list[tuple[int, ...]] = []
    original = StaticDecoder._prefill_prefixes

    def spy(self, rows, first, width):
        seen.extend(dict.fromkeys(tuple(p[:k]) for p, k in zip(rows, first)))
        return original(self, rows, first, width)

    monkeypatch.setattr(StaticDecoder, "_prefill_prefixes", spy)
    return seen


def _model(ref: str, adapter: bool):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.model.tiny import tiny_model_path

    path = tiny_model_path(ref)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    if adapter:  # at random (B not zero), so that it moves every score
        torch.manual_seed(0)
        targets = ["c_attn"] if "gpt2" in ref else ["q_proj", "v_proj"]
        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False))
    return model.eval(), AutoTokenizer.from_pretrained(path)


@pytest.mark.parametrize("adapter", [False, True], ids=["base", "lora"])
@pytest.mark.parametrize("ref", ["tiny:llama-ko", "tiny:gpt2", "tiny:qwen2"])
def test_shared_prefixes_score_as_plain_rows_and_run_once(ref, adapter, prefill_spy):
    from harness.engine.run import run_requests

    model, tokenizer = _model(ref, adapter)
    requests, prefixes = _requests(tokenizer)
    out: dict = {}
    run_requests(model, tokenizer, requests, RunOptions(batch_size=None), out.__setitem__)
    assert sorted(out) == list(range(len(requests)))
    for i, r in enumerate(requests):
        logprob, greedy, tokens = reference(model, tokenizer, r.context, r.continuation)
        assert out[i].logprob == pytest.approx(logprob, **TOLERANCE), (i, r)
        assert (out[i].is_greedy, out[i].tokens) == (greedy, tokens), (i, r)
    # Each question's context was prefilled after its prefix, and each prefix once.
    assert len(prefill_spy) == len(set(prefill_spy)) == len(prefixes)
    assert all(any(seen[: len(p)] == p for seen in prefill_spy) for p in prefixes)


@pytest.mark.parametrize("adapter", [False, True], ids=["base", "lora"])
@pytest.mark.parametrize("ref", ["tiny:llama-ko", "tiny:gpt2", "tiny:qwen2"])
def test_chunks_stream_through_full_batches_and_score_as_plain_rows(ref, adapter, monkeypatch):
    """The requests come in chunks of a few contexts (each encoded while the one before is scored):
    a chunk's partial last batch waits for the next chunk's groups, so every batch but the last is
    full, and every request is answered once, as its plain row (transformers' forward, peft's LoRA)."""
    from harness.engine import loglikelihood, prefix_choices
    from harness.engine.run import run_requests

    monkeypatch.setattr(loglikelihood, "CHUNK", 5)
    sizes = []
    original = prefix_choices._prefill
    monkeypatch.setattr(prefix_choices, "_prefill", lambda d, p, s, g: sizes.append(len(g)) or original(d, p, s, g))
    model, tokenizer = _model(ref, adapter)
    requests, _ = _requests(tokenizer)
    out: dict = {}
    run_requests(model, tokenizer, requests, RunOptions(batch_size=3), out.__setitem__)
    assert sorted(out) == list(range(len(requests)))
    assert len(sizes) == -(-QUESTIONS // 3) and set(sizes[:-1]) == {3}, sizes
    for i, r in enumerate(requests):
        logprob, greedy, tokens = reference(model, tokenizer, r.context, r.continuation)
        assert out[i].logprob == pytest.approx(logprob, **TOLERANCE), (i, r)
        assert (out[i].is_greedy, out[i].tokens) == (greedy, tokens), (i, r)


def test_an_interrupt_keeps_the_answers_of_the_batch_already_queued(monkeypatch):
    """Each batch is answered while the next computes; an interrupt as the third batch is queued
    still hands over the second's answers (the GPU computed them), and nothing of the third."""
    from harness.engine import prefix_choices
    from harness.engine.run import run_requests

    batches = []
    original = prefix_choices._prefill

    def interrupted(decoder, prompts, shared, groups):
        if len(batches) == 2:
            raise KeyboardInterrupt
        batches.append({index for g in groups for index, _, _ in g.members})
        return original(decoder, prompts, shared, groups)

    monkeypatch.setattr(prefix_choices, "_prefill", interrupted)
    model, tokenizer = _model("tiny:gpt2", False)
    requests, _ = _requests(tokenizer)
    out: dict = {}
    with pytest.raises(KeyboardInterrupt):
        run_requests(model, tokenizer, requests, RunOptions(batch_size=4), out.__setitem__)
    assert set(out) == batches[0] | batches[1] and len(out) == 2 * 4 * 4, (sorted(out), batches)


def test_the_batch_held_to_the_end_keeps_its_size_where_the_engine_sizes_batches(monkeypatch):
    """Without a batch size or a memory budget (a CPU) batches hold the token budget's rows; the
    last chunk's held batch is scored at that size too, not one row per forward."""
    from harness.engine import loglikelihood, prefix_choices
    from harness.engine.run import run_requests

    model, tokenizer = _model("tiny:llama-ko", False)
    requests, _ = _requests(tokenizer)
    longest = max(len(tokenizer(r.context)["input_ids"]) for r in requests)
    # Chunks of 4 questions, batches of 3: each chunk holds a batch back, the last one 3 questions.
    monkeypatch.setattr(loglikelihood, "CHUNK", 4)
    monkeypatch.setattr(loglikelihood, "TOKENS_PER_FORWARD", 3 * longest)
    sizes = []
    original = prefix_choices._prefill
    monkeypatch.setattr(prefix_choices, "_prefill", lambda d, p, s, g: sizes.append(len(g)) or original(d, p, s, g))
    out: dict = {}
    run_requests(model, tokenizer, requests, RunOptions(batch_size=None), out.__setitem__)
    assert sorted(out) == list(range(len(requests)))
    assert len(sizes) == -(-QUESTIONS // 3) and set(sizes[:-1]) == {3}, sizes
