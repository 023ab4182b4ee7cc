"""Issue #27, point 5: bits per byte count only the bytes of tokens that were scored.

Two tokenizers from the tiny model's own files: one with its BOS token (harness starts every
document with it, so every token of the text is scored) and one without (the first token cannot
be scored, so its bytes leave the denominator). Each is checked against a sliding-window NLL
written out here, on shipped documents, every one longer than the suite's context.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

ASSETS = Path(__file__).resolve().parents[2] / "harness" / "data" / "assets"
CONTEXT, STRIDE = 128, 64  # suites/perplexity_ko.yaml


@pytest.fixture(scope="module")
def model(tiny_path):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_path, torch_dtype=torch.float32).eval()


def _tokenizer(tiny_path, with_bos: bool):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_path)
    if not with_bos:
        tokenizer.bos_token = None
    return tokenizer


def _documents(ids=("ppl-01", "ppl-07", "ppl-12")) -> list[dict]:
    rows = [json.loads(line) for line in (ASSETS / "perplexity_ko.jsonl").read_text(encoding="utf-8").splitlines()]
    return [r for r in rows if r["id"] in ids]


def direct_sliding_nll(model, ids: list[int], context: int, stride: int) -> tuple[float, int]:
    """The transformers perplexity guide's loop: each target scored once, by the first window that
    holds it with at least one token before it."""
    import torch

    nll, scored, done = 0.0, 0, 1  # target positions below `done` are scored (position 0 never is)
    for begin in range(0, len(ids), stride):
        end = min(begin + context, len(ids))
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([ids[begin:end]])).logits[0].double()
        logprobs = torch.log_softmax(logits, dim=-1)
        for position in range(max(done, begin + 1), end):
            nll -= float(logprobs[position - begin - 1, ids[position]])
            scored += 1
        done = end
        if end == len(ids):
            break
    return nll, scored


def _run_task(model, tokenizer, documents, suite_config):
    import torch

    from harness.evaluate.execute import run_task
    from harness.tasks import Request, get_task

    suite, _ = suite_config("perplexity_ko.yaml", {"engine": "plain"})
    records = []
    task = get_task("perplexity")
    requests = task.build_requests(suite, documents, tokenizer, [])
    torch.set_num_threads(1)
    run_task(task, model, tokenizer, suite, requests, 2, records.append)
    assert all(isinstance(r, Request) for r in requests)
    return {r["id"]: r for r in records}


@pytest.mark.parametrize("with_bos", [True, False])
def test_bits_per_byte_against_a_direct_computation(model, tiny_path, suite_config, with_bos):
    tokenizer = _tokenizer(tiny_path, with_bos)
    documents = _documents()
    records = _run_task(model, tokenizer, documents, suite_config)
    total_nll = total_bytes = 0.0
    for doc in documents:
        text_ids = tokenizer(doc["text"], add_special_tokens=False)["input_ids"]
        if with_bos:
            ids, n_bytes = [tokenizer.bos_token_id, *text_ids], len(doc["text"].encode("utf-8"))
        else:
            first = tokenizer.decode(text_ids[:1])
            assert doc["text"].startswith(first)
            ids, n_bytes = text_ids, len(doc["text"].encode("utf-8")) - len(first.encode("utf-8"))
        nll, scored = direct_sliding_nll(model, ids, CONTEXT, STRIDE)
        record = records[doc["id"]]
        assert record["tokens"] == scored == len(text_ids) - (0 if with_bos else 1)
        assert record["nll"] == pytest.approx(nll, rel=1e-5)
        assert record["bytes"] == n_bytes
        total_nll, total_bytes = total_nll + nll, total_bytes + n_bytes
    from harness.tasks.perplexity import _bpb

    assert _bpb(list(records.values())) == pytest.approx(total_nll / math.log(2) / total_bytes, rel=1e-5)


def test_shipped_suite_slides_its_window(tiny_path):
    tokenizer = _tokenizer(tiny_path, True)
    every = [
        json.loads(line)["id"] for line in (ASSETS / "perplexity_ko.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    shortest = min(len(tokenizer(d["text"])["input_ids"]) for d in _documents(every))
    assert shortest > CONTEXT
