"""Log-likelihoods on encoder-decoders and the perplexity of a text given a source, against direct
references computed here with transformers and peft: one forward of AutoModelForSeq2SeqLM with the
context as input and the continuation as `labels` (a choice's without special tokens, as
lm-evaluation-harness scores it), its token log-probabilities summed (per window
where the decoder's text is longer than a window); on a decoder-only base, one forward over the
source then the text, only the text's tokens scored."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seq2seq_reference import target_logprob

BASES = ["tiny:t5-ko", "tiny:bart-ko"]
PAIRS = [
    ("A: 내일 회의 몇 시예요?\nB: 오후 세 시요.", "회의는 내일 오후 세 시다."),
    ("요약: 비가 왔다.", "비"),
    ("", "빈 입력에서 시작하는 글"),
]
ADAPTER = "s2s"
RELATIVE = 1e-4  # float32 sums over tens of tokens: rounding only


def _reference(model, adapter: bool, fn, *args):
    if adapter:
        return fn(model, *args)
    with model.disable_adapter():
        return fn(model, *args)


@pytest.mark.parametrize("ref", BASES)
def test_loglikelihood_equals_reference(ref, seq2seq_setup):
    from harness.config import Quantization
    from harness.engine.requests import LoglikelihoodRequest, RunOptions
    from harness.engine.run import run_requests
    from harness.model.adapters import attach_adapters
    from harness.model.loading import load_base
    from harness.runtime.env import detect

    adapter, model, tokenizer = seq2seq_setup(ref)
    models = attach_adapters(load_base(ref, Quantization(), detect()), {ADAPTER: str(adapter)})
    requests = [LoglikelihoodRequest(context, continuation) for context, continuation in PAIRS]
    for name in ("base", ADAPTER):
        got = {}
        with models.use(name) as harness_model:
            run_requests(harness_model, models.base.tokenizer, requests, RunOptions(batch_size=2), got.__setitem__)
        for i, (context, continuation) in enumerate(PAIRS):
            logprob, greedy, tokens = _reference(
                model, name == ADAPTER, choice_logprob, tokenizer, context, continuation
            )
            assert (got[i].tokens, got[i].is_greedy) == (tokens, greedy), (name, i)
            assert got[i].logprob == pytest.approx(logprob, rel=RELATIVE), (name, i)


def choice_logprob(model, tokenizer, context: str, continuation: str) -> tuple[float, bool, int]:
    """A log-likelihood request as lm-evaluation-harness's seq2seq backend scores it: the context with
    its special tokens as input (an empty one: BOS, else eos), the continuation without them as labels."""
    import torch

    prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    ids = tokenizer(context).input_ids if context else [prefix]
    labels = torch.tensor([tokenizer(continuation, add_special_tokens=False).input_ids])
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids]), labels=labels).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1).gather(1, labels[0][:, None])[:, 0]
    return float(logprobs.double().sum()), bool((logits.argmax(-1) == labels[0]).all()), labels.shape[1]


def _windowed_nll(model, tokenizer, source: str, text: str, context: int, stride: int) -> tuple[float, int]:
    """The decoder's text (its start token first) in windows of `context` tokens, `stride` apart, each
    scoring the targets no earlier window scored, every window reading the whole source."""
    import torch

    encoder = tokenizer(source, return_tensors="pt").input_ids
    row = [model.config.decoder_start_token_id, *tokenizer(text).input_ids]
    nll, scored, done = 0.0, 0, 1
    for begin in range(0, len(row), stride):
        end = min(begin + context, len(row))
        with torch.inference_mode():
            logits = model(input_ids=encoder, decoder_input_ids=torch.tensor([row[begin:end]])).logits[0].float()
        for t in range(max(done, begin + 1), end):
            nll -= float(torch.log_softmax(logits[t - begin - 1], dim=-1)[row[t]])
            scored += 1
        done = end
        if end == len(row):
            break
    return nll, scored


def _perplexity_run(run_cli, workdir: Path, base: str, adapter, overrides: dict) -> dict[str, list[dict]]:
    suite = workdir / "ppl.yaml"
    suite.write_text(
        "name: ppl-given-source\ntask: perplexity\ndataset: {path: builtin:dialogue_summarization_ko, limit: 3}\n"
        f"perplexity: {{field: summary}}\nmodels: {{base: {base}}}\n",
        encoding="utf-8",
    )
    args = ["eval", suite, "--out", "runs", "--run-id", "ppl", "--batch-size", 2]
    args += ["--adapter", f"{ADAPTER}={adapter}"] if adapter else []
    for key, value in overrides.items():
        args += ["--set", f"{key}={value}"]
    code, _out, err = run_cli(args)
    assert code == 0, err
    results = json.loads((workdir / "runs" / "ppl" / "results.json").read_text())
    assert all("perplexity" in metrics for metrics in results["metrics"].values())
    names = ["base"] + ([ADAPTER] if adapter else [])
    return {n: [json.loads(x) for x in (workdir / "runs" / "ppl" / "records" / f"{n}.jsonl").open()] for n in names}


@pytest.mark.parametrize(
    ("ref", "window"), [("tiny:t5-ko", None), ("tiny:bart-ko", None), ("tiny:t5-ko", (8, 4)), ("tiny:bart-ko", (8, 3))]
)
def test_perplexity_given_source_equals_reference(ref, window, seq2seq_setup, run_cli, workdir):
    adapter, model, tokenizer = seq2seq_setup(ref)
    context, stride = window or (512, 256)
    overrides = {
        "perplexity.source_field": "dialogue",
        "perplexity.context_length": context,
        "perplexity.stride": stride,
    }
    runs = _perplexity_run(run_cli, workdir, ref, adapter, overrides)
    for name, records in runs.items():
        for record in records:
            source, text = record["source"], record["prompt"]
            if window:
                nll, tokens = _reference(
                    model, name == ADAPTER, _windowed_nll, tokenizer, source, text, context, stride
                )
            else:
                logprob, _greedy, tokens = _reference(model, name == ADAPTER, target_logprob, tokenizer, source, text)
                nll = -logprob
            assert record["tokens"] == tokens and record["bytes"] == len(text.encode("utf-8"))
            assert record["nll"] == pytest.approx(nll, rel=RELATIVE), (name, record["id"])


def test_perplexity_without_source_reads_an_empty_input(seq2seq_setup, run_cli, workdir):
    _adapter, model, tokenizer = seq2seq_setup("tiny:bart-ko")
    for record in _perplexity_run(run_cli, workdir, "tiny:bart-ko", None, {})["base"]:
        with model.disable_adapter():
            logprob, _greedy, tokens = target_logprob(model, tokenizer, "", record["prompt"])
        assert record["tokens"] == tokens and record["nll"] == pytest.approx(-logprob, rel=RELATIVE)
    # Windows longer than BART's learned decoder positions are refused in one line.
    code, _out, err = run_cli(["eval", workdir / "ppl.yaml", "--set", "perplexity.context_length=2048"])
    assert code == 2 and "perplexity.context_length=2048 exceeds the decoder's context of 1024" in err, err


def test_perplexity_given_source_on_a_decoder_only_base(tiny_path, run_cli, workdir):
    """The source's tokens (BOS first) before the text's, as context only: one forward, the text scored."""
    import torch
    from transformers import AutoTokenizer
    from zoo_helpers import load_reference as load_causal

    from harness.model.tiny import tiny_model_path

    model, _tokenizer = load_causal(str(tiny_model_path("tiny:llama-ko")))
    tokenizer = AutoTokenizer.from_pretrained(tiny_path)
    records = _perplexity_run(run_cli, workdir, "tiny:llama-ko", None, {"perplexity.source_field": "dialogue"})["base"]
    for record in records:
        source = tokenizer(record["source"]).input_ids
        if tokenizer.bos_token_id is not None and source[:1] != [tokenizer.bos_token_id]:
            source = [tokenizer.bos_token_id, *source]  # as the rolling log-likelihood starts every text
        text = tokenizer(record["prompt"], add_special_tokens=False).input_ids
        ids = torch.tensor([source + text])
        with torch.inference_mode():
            logits = model(input_ids=ids).logits[0, len(source) - 1 : -1].float()
        nll = float(torch.nn.functional.cross_entropy(logits, ids[0, len(source) :], reduction="sum"))
        assert record["tokens"] == len(text) and record["nll"] == pytest.approx(nll, rel=RELATIVE)
