"""The engine's log-likelihood requests against plain references computed here with transformers on
the tiny model: a continuation's summed log-probability and whether it is greedy (context and
continuation tokenized together, as lm-evaluation-harness does), and a text's rolling
log-likelihood over a sliding window."""

from __future__ import annotations

import pytest
from test_bits_per_byte import direct_sliding_nll

from harness.engine.requests import LoglikelihoodRequest, RollingLoglikelihoodRequest, RunOptions

PAIRS = [
    ("문맥: 서울은 한국의 수도이다.\n질문: 한국의 수도는 어디인가?\n답:", " 서울"),
    ("The capital of Korea is", " Seoul, a large city."),
    ("한국어", "는 재미있다"),
    ("", "빈 문맥에서 시작하는 글"),
]


@pytest.fixture(scope="module")
def model(tiny_path):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_path, torch_dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def tokenizer(tiny_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_path)


def reference(model, tokenizer, context: str, continuation: str) -> tuple[float, bool, int]:
    """One row alone: log_softmax at the continuation's positions, summed; greedy if every
    continuation token is the argmax."""
    import torch

    whole = tokenizer(context + continuation)["input_ids"]
    start = len(tokenizer(context)["input_ids"])  # an empty context is the BOS a tokenizer adds itself
    if start == 0:  # nothing to condition the first token on: BOS first (eos where a tokenizer has none)
        first = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        whole, start = [first, *whole], 1
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([whole])).logits[0].double()
    logprobs = torch.log_softmax(logits, dim=-1)
    targets = whole[start:]
    total = sum(float(logprobs[t - 1, whole[t]]) for t in range(start, len(whole)))
    greedy = all(int(logprobs[t - 1].argmax()) == whole[t] for t in range(start, len(whole)))
    return total, greedy, len(targets)


def _run(model, tokenizer, requests, batch_size=2) -> dict:
    from harness.engine.run import run_requests

    out: dict = {}
    run_requests(model, tokenizer, requests, RunOptions(batch_size=batch_size), out.__setitem__)
    assert sorted(out) == list(range(len(requests)))
    return out


def _greedy_pair(model, tokenizer) -> tuple[str, str]:
    """A context and the continuation the model itself would write (3 greedy tokens)."""
    import torch

    context = "한국의 수도는"
    ids = tokenizer(context)["input_ids"]
    with torch.inference_mode():
        for _ in range(3):
            ids.append(int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
    return context, tokenizer.decode(ids[-3:], skip_special_tokens=True)


@pytest.mark.parametrize("batch_size", [1, 2, None])
def test_continuation_loglikelihood_equals_a_plain_computation(model, tokenizer, batch_size):
    pairs = [*PAIRS, _greedy_pair(model, tokenizer)]
    results = _run(model, tokenizer, [LoglikelihoodRequest(c, x) for c, x in pairs], batch_size)
    for i, (context, continuation) in enumerate(pairs):
        logprob, greedy, tokens = reference(model, tokenizer, context, continuation)
        assert results[i].logprob == pytest.approx(logprob, rel=1e-5)
        assert (results[i].is_greedy, results[i].tokens) == (greedy, tokens)
    assert results[len(pairs) - 1].is_greedy  # the model's own continuation


@pytest.mark.parametrize("family", ["gpt2", "qwen2", "gemma", "gpt-neox", "opt"])
def test_continuation_loglikelihood_on_other_families(harness_cache, family):
    """The same plain reference on families whose tokenizers add BOS (Gemma, OPT), have none
    (Qwen2) or share it with eos (GPT-2), and on models with other position schemes."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.model.tiny import tiny_model_path

    path = tiny_model_path(f"tiny:{family}")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    results = _run(model, tokenizer, [LoglikelihoodRequest(c, x) for c, x in PAIRS], 2)
    for i, (context, continuation) in enumerate(PAIRS):
        logprob, greedy, tokens = reference(model, tokenizer, context, continuation)
        assert results[i].logprob == pytest.approx(logprob, rel=1e-5)
        assert (results[i].is_greedy, results[i].tokens) == (greedy, tokens)


def test_a_contexts_trailing_space_moves_to_the_continuation(model, tokenizer):
    requests = [
        LoglikelihoodRequest("The capital of Korea is ", "Seoul"),
        LoglikelihoodRequest("The capital of Korea is", " Seoul"),
    ]
    results = _run(model, tokenizer, requests, 1)
    assert results[0] == results[1]
    assert results[0].logprob == pytest.approx(reference(model, tokenizer, "The capital of Korea is", " Seoul")[0])


@pytest.mark.parametrize(("context", "stride"), [(32, 16), (48, 40)])
def test_rolling_loglikelihood_equals_a_plain_sliding_window(model, tokenizer, context, stride):
    texts = [
        "서울은 한국의 수도이며 가장 큰 도시이다. " * 6,
        "The quick brown fox jumps over the lazy dog. " * 5,
        "짧은 글",
        "",
    ]
    results = _run(model, tokenizer, [RollingLoglikelihoodRequest(t, context, stride) for t in texts], None)
    for i, text in enumerate(texts):
        ids = [tokenizer.bos_token_id, *tokenizer(text)["input_ids"]]  # every token of the text is scored
        nll, scored = direct_sliding_nll(model, ids, context, stride) if len(ids) > 1 else (0.0, 0)
        assert results[i].tokens == scored == len(ids) - 1
        assert results[i].nll == pytest.approx(nll, rel=1e-5, abs=1e-9)
        assert results[i].bytes == (len(text.encode("utf-8")) if scored else 0)


def test_one_kind_of_request_at_a_time(model, tokenizer):
    from harness.engine.run import run_requests

    with pytest.raises(ValueError, match="one kind"):
        run_requests(
            model,
            tokenizer,
            [LoglikelihoodRequest("a", "b"), RollingLoglikelihoodRequest("a b", 8, 4)],
            RunOptions(),
            lambda i, r: None,
        )


KMMLU_LIKE = (
    "다음 중 한국의 수도는 어디인가?\nA. 부산\nB. 서울\nC. 대구\nD. 광주\n정답：",
    "The capital of Korea is\nA. Busan\nB. Seoul\nC. Daegu\nD. Gwangju\nAnswer:",
)


def _choice_requests() -> list[LoglikelihoodRequest]:
    """Choice samples as the choice task sends them: N consecutive requests sharing one context, with
    one-token choices (" A"…" D") and longer ones beside them, and a duplicate of a whole sample."""
    requests = [LoglikelihoodRequest(c, f" {x}") for c in KMMLU_LIKE for x in "ABCD"]
    requests += [LoglikelihoodRequest(KMMLU_LIKE[0], x) for x in (" 서울", " 부산광역시", "")]
    requests += [LoglikelihoodRequest(c, x) for c, x in PAIRS]
    return requests + requests[:4]


def _with_adapter(model, seed: int = 0):
    """`model` with a random, non-zero LoRA on every linear layer but the head (peft's own model)."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    return get_peft_model(model, config).eval()


@pytest.mark.parametrize("family", ["llama-ko", "gpt2", "qwen2"])
@pytest.mark.parametrize("adapter", [False, True], ids=["base", "adapter"])
def test_shared_context_choices_equal_a_plain_forward(harness_cache, family, adapter):
    """Choices sharing a context (one forward for the one-token ones, only scored positions through
    the LM head, sizes from the engine) give each request what its own plain forward gives, on the
    zoo's families and through a peft adapter; engine "plain" (each row whole) agrees too."""
    import copy

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.engine.run import run_requests
    from harness.model.tiny import tiny_model_path

    path = tiny_model_path(f"tiny:{family}")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    model = _with_adapter(copy.deepcopy(model)) if adapter else model
    tokenizer = AutoTokenizer.from_pretrained(path)
    requests = _choice_requests()
    for options in (RunOptions(batch_size=None), RunOptions(batch_size=3), RunOptions(batch_size=2, engine="plain")):
        out: dict = {}
        run_requests(model, tokenizer, requests, options, out.__setitem__)
        assert sorted(out) == list(range(len(requests)))
        for i, r in enumerate(requests):
            logprob, greedy, tokens = reference(model, tokenizer, r.context, r.continuation)
            assert out[i].logprob == pytest.approx(logprob, rel=1e-5, abs=1e-9), (options, r)
            assert (out[i].is_greedy, out[i].tokens) == (greedy, tokens), (options, r)


def test_one_token_choices_share_one_forward_and_score_only_their_positions(model, tokenizer):
    """Four one-token choices after one context: one forward of the context alone (the choice token
    is never an input), and the LM head sees one position."""
    import torch

    seen: list[tuple] = []
    hooks = [
        model.get_input_embeddings().register_forward_hook(lambda m, a, o: seen.append(("in", tuple(a[0].shape)))),
        model.get_output_embeddings().register_forward_hook(lambda m, a, o: seen.append(("head", tuple(a[0].shape)))),
    ]
    try:
        requests = [LoglikelihoodRequest(KMMLU_LIKE[0], f" {x}") for x in "ABCD"]
        results = _run(model, tokenizer, requests, None)
    finally:
        for h in hooks:
            h.remove()
    context = len(tokenizer(KMMLU_LIKE[0])["input_ids"])
    assert [r.tokens for r in results.values()] == [1] * 4  # each choice is one token here
    assert seen == [("in", (1, context)), ("head", (1, 1, model.config.hidden_size))]
    assert torch.tensor([results[i].logprob for i in range(4)]).exp().sum() < 1


class _Counted:
    """`tokenizer` itself, keeping every call that reaches it."""

    def __init__(self, tokenizer):
        self.tokenizer, self.calls = tokenizer, []

    def __call__(self, *args, **kwargs):
        self.calls.append(args)
        return self.tokenizer(*args, **kwargs)

    def encode(self, *args, **kwargs):
        self.calls.append(args)
        return self.tokenizer.encode(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)


def test_pretokenized_rows_equal_the_tokenizers_own(tokenizer):
    """The rows built from one batch encoding are those the tokenizer gives one call at a time."""
    from harness.engine.continuation import continuation_row
    from harness.engine.pretokenize import Pretokenized, choice_texts

    counted, requests = _Counted(tokenizer), _choice_requests()
    batched = Pretokenized(counted, choice_texts(requests))
    assert [continuation_row(batched, r, 64) for r in requests] == [
        continuation_row(tokenizer, r, 64) for r in requests
    ]
    # The rows came from the one batch call (an empty context encodes its continuation alone).
    assert len(counted.calls) == 1 + sum(not r.context for r in requests)
    assert (
        batched("한국어", add_special_tokens=False)["input_ids"]
        == tokenizer("한국어", add_special_tokens=False)["input_ids"]
    )


def test_an_evals_columns_encode_their_texts_once(tokenizer):
    """Under `shared_encodings` (an eval's columns) a second model's rows reuse the first one's batch
    encoding: no call reaches the tokenizer, and the rows are still the tokenizer's own."""
    from harness.engine.continuation import continuation_row
    from harness.engine.pretokenize import Pretokenized, choice_texts, shared_encodings

    counted, requests = _Counted(tokenizer), _choice_requests()
    with shared_encodings():
        Pretokenized(counted, choice_texts(requests))
        before = len(counted.calls)
        again = Pretokenized(counted, choice_texts(requests))
        assert len(counted.calls) == before
        assert [continuation_row(again, r, 64) for r in requests] == [
            continuation_row(tokenizer, r, 64) for r in requests
        ]
    before = len(counted.calls)
    Pretokenized(counted, choice_texts(requests))  # closed: nothing kept
    assert len(counted.calls) == before + 1


def test_chunks_of_contexts_encoded_beside_the_model_answer_every_request(model, tokenizer, monkeypatch):
    """The fast path scores its requests in chunks of whole contexts (the next chunk encoded in a
    thread meanwhile): every request is answered once, under its own index, as its plain row."""
    from harness.engine import loglikelihood as engine
    from harness.engine.requests import RunOptions

    monkeypatch.setattr(engine, "CHUNK", 2)
    requests = _choice_requests()
    chunks = engine._chunks(requests)
    assert len(chunks) > 2 and sorted(i for c in chunks for i in c) == list(range(len(requests)))
    assert all(len({requests[i].context for i in c}) <= 2 for c in chunks)
    assert len({(requests[i].context, n) for n, c in enumerate(chunks) for i in c}) == len(
        {r.context for r in requests}
    )  # a context's requests are never parted
    out: dict = {}
    engine.loglikelihood(model, tokenizer, requests, RunOptions(batch_size=None), out.__setitem__)
    assert sorted(out) == list(range(len(requests)))
    for i, r in enumerate(requests):
        logprob, greedy, tokens = reference(model, tokenizer, r.context, r.continuation)
        assert out[i].logprob == pytest.approx(logprob, abs=1e-5), (i, r)
        assert (out[i].is_greedy, out[i].tokens) == (greedy, tokens), (i, r)


def test_forwards_hold_at_most_their_token_budget_longest_first():
    from harness.engine.scoring import Group, batches

    groups = [Group(list(range(n))) for n in (5, 40, 12, 30, 7, 40)]
    cut = batches(groups, None, 80)
    assert [[len(g.inputs) for g in b] for b in cut] == [[40, 40], [30, 12], [7, 5]]
    assert all(len(b) * len(b[0].inputs) <= 80 for b in cut)
    assert [len(b) for b in batches(groups, 4, 80)] == [4, 2]


def test_a_second_column_reuses_the_first_ones_chunk_encodings(model, tokenizer, monkeypatch):
    """An eval's second column (under `shared_encodings`) encodes no text in its chunks' thread: every
    chunk's batch call was the first column's, and its answers are the first column's."""
    from harness.engine import loglikelihood as engine
    from harness.engine.pretokenize import shared_encodings
    from harness.engine.requests import RunOptions

    monkeypatch.setattr(engine, "CHUNK", 2)
    counted, requests = _Counted(tokenizer), _choice_requests()

    def batch_calls() -> int:
        return sum(isinstance(args[0], list) for args in counted.calls)

    with shared_encodings():
        first: dict = {}
        engine.loglikelihood(model, counted, requests, RunOptions(batch_size=None), first.__setitem__)
        assert batch_calls() == len(engine._chunks(requests))
        second: dict = {}
        engine.loglikelihood(model, counted, requests, RunOptions(batch_size=None), second.__setitem__)
    assert batch_calls() == len(engine._chunks(requests))
    assert second == first


def test_held_encodings_take_a_few_bytes_per_token(tokenizer):
    """An eval's columns keep every text's ids until the last column: held as machine integers, not
    as a list's pointers to Python ints (at least twice the bytes even for small ids)."""
    import gc
    import tracemalloc

    from harness.engine.pretokenize import Pretokenized, shared_encodings

    texts = [f"{n}번째 문단: " + "대한민국의 수도는 서울이다. " * 80 for n in range(40)]
    Pretokenized(tokenizer, texts)  # the tokenizer's own first-call state, kept by it, not by us
    with shared_encodings():
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            pretokenized = Pretokenized(tokenizer, texts)
            gc.collect()  # the batch call's own objects, freed in a cycle
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        ids = sum(len(pretokenized.encode(t)) for t in texts)
    assert ids > 20_000
    assert held / ids < 6, f"{held / ids:.1f} bytes per id"
