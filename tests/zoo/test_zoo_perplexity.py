"""`harness eval` perplexity on every decoder family of the zoo, both engines, documents batched:
each document's summed negative log-likelihood and token count equal one forward of the 4-bit
base + PeftModel over the whole document (it fits one window here), tokenized by the tokenizer
with its own special tokens and starting from BOS where the tokenizer has one."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from seq2seq_reference import target_logprob
from zoo_helpers import ADAPTER, DECODERS, ENCODER_DECODERS, one_torch_thread, read_jsonl

pytestmark = pytest.mark.slow
SUITE = Path(__file__).resolve().parents[2] / "suites" / "perplexity_ko.yaml"
# Summed over a few hundred tokens in float32: relative rounding, not a modelling difference.
RELATIVE_TOLERANCE = 1e-4


def _direct_nll(model, tokenizer, text: str) -> tuple[float, int]:
    """Every token of the document scored, the first from BOS where the tokenizer has one, as
    lm-evaluation-harness's rolling log-likelihood does (whether or not the tokenizer adds it)."""
    import torch

    ids = tokenizer(text, return_tensors="pt").input_ids
    bos = tokenizer.bos_token_id
    if bos is not None and int(ids[0, 0]) != bos:
        ids = torch.cat([torch.tensor([[bos]]), ids], dim=1)
    with torch.inference_mode():
        logits = model(input_ids=ids).logits[0, :-1].float()
    nll = torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum")
    return float(nll), ids.shape[1] - 1


@pytest.mark.parametrize("engine", ["fast", "plain"])
@pytest.mark.parametrize("family", DECODERS)
def test_perplexity_equals_reference(family, engine, zoo_adapter, reference, run_cli, workdir):
    adapter, _record = zoo_adapter(family)
    code, _out, err = run_cli(
        [
            "eval",
            SUITE,
            "--base",
            f"tiny:{family}",
            "--adapter",
            f"{ADAPTER}={adapter}",
            "--limit",
            4,
            "--batch-size",
            4,
            "--engine",
            engine,
            "--out",
            "runs",
            "--run-id",
            "ppl",
            "--set",
            "perplexity.context_length=512",
            "--set",
            "perplexity.stride=256",
        ]
    )
    assert code == 0, err
    ref = reference(family)
    wrong = _differences(workdir, ref.model, lambda text: _direct_nll(ref.model, ref.tokenizer, text))
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("family", ENCODER_DECODERS)
def test_encoder_decoder_perplexity_equals_reference(family, seq2seq_setup, run_cli, workdir):
    """The zoo's encoder-decoders without a source: each document is the decoder's text after an empty encoder input,
    every token scored, equal to one forward of AutoModelForSeq2SeqLM with the document as `labels`."""
    adapter, model, tokenizer = seq2seq_setup(f"tiny:{family}")
    args = ["eval", SUITE, "--base", f"tiny:{family}", "--adapter", f"{ADAPTER}={adapter}", "--limit", 4]
    args += ["--batch-size", 4, "--out", "runs", "--run-id", "ppl"]
    code, _out, err = run_cli([*args, "--set", "perplexity.context_length=1024", "--set", "perplexity.stride=512"])
    assert code == 0, err

    def direct(text: str) -> tuple[float, int]:
        logprob, _greedy, tokens = target_logprob(model, tokenizer, "", text)
        return -logprob, tokens

    wrong = _differences(workdir, model, direct)
    assert not wrong, "\n".join(wrong)


def _differences(workdir: Path, model, direct) -> list[str]:
    """Each record of the base and the adapter whose NLL or token count differs from `direct(text)` on
    the reference `model` (its adapter switched off for the base)."""
    wrong = []
    for model_name in ("base", ADAPTER):
        records = read_jsonl(workdir / "runs" / "ppl" / "records" / f"{model_name}.jsonl")
        assert len(records) == 4
        for record in records:
            adapter_off = model.disable_adapter() if model_name != ADAPTER else contextlib.nullcontext()
            with one_torch_thread(), adapter_off:
                nll, tokens = direct(record["prompt"])
            if record["tokens"] != tokens or abs(record["nll"] - nll) > RELATIVE_TOLERANCE * nll:
                wrong.append(
                    f"{model_name} {record['id']}: harness {record['nll']:.6f} over {record['tokens']} "
                    f"tokens vs reference {nll:.6f} over {tokens}"
                )
    return wrong
