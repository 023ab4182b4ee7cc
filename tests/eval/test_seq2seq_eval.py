"""`harness eval`, `generate`, `rescore`, `report` and `chat` on the built-in encoder-decoders
(tiny:t5-ko, tiny:bart-ko) with a real peft adapter made here: every greedy answer of the base and
of the adapter, batched over prompts of different lengths, equals `generate` on the single
un-padded prompt of the 4-bit base + PeftModel (transformers and peft alone)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seq2seq_reference import NEW_TOKENS, greedy

SUITE = Path(__file__).resolve().parents[2] / "suites" / "summarization_dialogue_ko.yaml"
BASES = ["tiny:t5-ko", "tiny:bart-ko"]
PENALTY = 1.1  # the suite's
STOPS = ("\n\n", "###")  # the suite's
ADAPTER = "s2s"


def _expected(model, tokenizer, prompt: str, adapter: bool, penalty: float) -> dict:
    def answer():
        return greedy(model, tokenizer, prompt, penalty)

    if adapter:
        new = answer()
    else:
        with model.disable_adapter():
            new = answer()
    text = tokenizer.decode(new, skip_special_tokens=True)
    cut = min([text.find(s) for s in STOPS if s in text], default=len(text))
    return {"output": text[:cut], "generated_tokens": len(new), "prompt_tokens": len(tokenizer(prompt).input_ids)}


def _read(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.parametrize("ref", BASES)
def test_eval_answers_equal_reference(ref, seq2seq_setup, run_cli, workdir):
    adapter, model, tokenizer = seq2seq_setup(ref)
    args = ["eval", SUITE, "--base", ref, "--adapter", f"{ADAPTER}={adapter}", "--limit", 5, "--batch-size", 4]
    args += ["--set", f"generation.max_new_tokens={NEW_TOKENS}", "--verify", 2, "--out", "runs", "--run-id", "r"]
    code, out, err = run_cli(args)
    assert code == 0, err
    assert f"engine plain: {type(model.get_base_model()).__name__} is an encoder-decoder" in out + err
    wrong, outputs = [], {}
    for name in ("base", ADAPTER):
        records = _read(workdir / "runs" / "r" / "records" / f"{name}.jsonl")
        assert len(records) == 5 and len({r["prompt_tokens"] for r in records}) > 1  # batches are padded
        for record in records:
            expected = _expected(model, tokenizer, record["prompt"], name == ADAPTER, PENALTY)
            wrong += [f"{name} {record['id']} {k}" for k, v in expected.items() if record[k] != v]
        outputs[name] = [r["output"] for r in records]
    assert not wrong, wrong
    assert outputs["base"] != outputs[ADAPTER]  # the adapter is applied
    results = json.loads((workdir / "runs" / "r" / "results.json").read_text())
    for name in ("base", ADAPTER):
        assert {"rouge1[mecab]", "rouge2[mecab]", "rougeL[mecab]", "rougeLsum[mecab]"} <= set(results["metrics"][name])
        # Batch 1 gives the same answers; the run was on the plain path too, and the summary says so.
        assert results["verify"][name]["agree"] == 2 and "batching" in results["verify"][name]["summary"]
    assert run_cli(["rescore", workdir / "runs" / "r"])[0] == 0
    code, _out, err = run_cli(["report", workdir / "runs" / "r", "-o", "report.html"])
    assert code == 0, err


@pytest.mark.parametrize("ref", BASES)
def test_generate_equals_reference(ref, seq2seq_setup, run_cli, workdir):
    adapter, model, tokenizer = seq2seq_setup(ref)
    prompts = [
        "서울",
        "A: 내일 회의 몇 시예요?\nB: 오후 세 시요. 자료는 제가 준비할게요.",
        "요약해 주세요: 오늘은 비가 왔다.",
    ]
    (workdir / "prompts.jsonl").write_text(
        "".join(json.dumps({"id": f"p{n}", "prompt": p}, ensure_ascii=False) + "\n" for n, p in enumerate(prompts)),
        encoding="utf-8",
    )
    args = ["generate", "--base", ref, "--adapter", f"{ADAPTER}={adapter}", "--prompts", "prompts.jsonl"]
    args += ["--max-new-tokens", NEW_TOKENS, "--compare", "repetition_penalty=1.0,1.3", "--batch-size", 3]
    code, _out, err = run_cli([*args, "--out", "out.jsonl", "--quiet"])
    assert code == 0, err
    records = _read("out.jsonl")
    assert len(records) == 3 * 2 * 2
    texts = dict(enumerate(prompts))
    wrong = []
    for record in records:
        prompt = texts[int(record["prompt_id"][1:])]
        expected = _expected(
            model, tokenizer, prompt, record["model"] == ADAPTER, record["settings"]["repetition_penalty"]
        )
        wrong += [f"{record['column']} {record['prompt_id']} {k}" for k, v in expected.items() if record[k] != v]
    assert not wrong, wrong
    # One prompt and one model: the answer is streamed, and equals the batched one.
    code, out, err = run_cli(["generate", "--base", ref, "--prompt", prompts[1], "--max-new-tokens", NEW_TOKENS])
    assert code == 0, err
    assert _expected(model, tokenizer, prompts[1], False, 1.0)["output"] in out


def test_engine_fast_and_chat_refused(run_cli):
    code, _out, err = run_cli(["eval", SUITE, "--base", "tiny:bart-ko", "--limit", 1, "--engine", "fast"])
    assert code == 2 and "engine" in err and "BartForConditionalGeneration is an encoder-decoder" in err, err
    code, _out, err = run_cli(["chat", "--base", "tiny:t5-ko"])
    assert code == 2 and "encoder-decoder without a chat template" in err and "harness generate" in err, err


def test_context_checks_on_an_encoder_decoder(run_cli, workdir):
    """The prompt alone must fit the encoder (BART's learned positions; T5 has no limit) and
    max_new_tokens the decoder; a too-long dialogue in eval is cut to the encoder's context."""
    long = "A: 안녕하세요 반갑습니다 " * 400  # far past 1,024 tokens
    code, _out, err = run_cli(["generate", "--base", "tiny:bart-ko", "--prompt", long, "--max-new-tokens", 2])
    assert code == 2 and "more than the encoder's context of 1024" in err, err
    code, _out, err = run_cli(["generate", "--base", "tiny:bart-ko", "--prompt", "서울", "--max-new-tokens", 1024])
    assert code == 2 and "max_new_tokens=1024 exceeds the decoder's context of 1024" in err, err
    code, _out, err = run_cli(["generate", "--base", "tiny:t5-ko", "--prompt", long, "--max-new-tokens", 2])
    assert code == 0, err
    data = workdir / "long.jsonl"
    data.write_text(json.dumps({"id": "long", "dialogue": long, "summary": "인사"}, ensure_ascii=False) + "\n")
    args = ["eval", SUITE, "--base", "tiny:bart-ko", "--data", data, "--out", "runs", "--run-id", "long"]
    code, _out, err = run_cli([*args, "--set", "generation.max_new_tokens=1024"])
    assert code == 2 and "generation.max_new_tokens=1024 exceeds the decoder's context" in err, err
    code, _out, err = run_cli([*args, "--set", "generation.max_new_tokens=4"])
    assert code == 0, err
    (record,) = _read(workdir / "runs" / "long" / "records" / "base.jsonl")
    assert record["truncated_tokens"] > 0 and 1000 < record["prompt_tokens"] <= 1024


@pytest.mark.parametrize("ref", BASES)
def test_beams_min_tokens_and_stop_equal_reference(ref, seq2seq_setup, run_cli, workdir):
    """Beam search, min_new_tokens, no_repeat_ngram_size and a stop string the answer holds, batched:
    the same text as `generate` with those settings on each single un-padded prompt."""
    import torch

    _adapter, model, tokenizer = seq2seq_setup(ref)
    prompts = ["서울", "A: 내일 회의 몇 시예요?\nB: 오후 세 시요. 자료는 제가 준비할게요.", "요약: 비가 왔다."]
    settings = {"num_beams": 3, "min_new_tokens": 6, "no_repeat_ngram_size": 2}

    def reference(prompt: str, stop: list[str]) -> str:
        ids = tokenizer(prompt, return_tensors="pt").input_ids.to(model.device)
        extra = {"stop_strings": stop, "tokenizer": tokenizer} if stop else {}
        with torch.inference_mode(), model.disable_adapter():
            out = model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS, **settings, **extra
            )
        new = out[0, 1:].tolist()
        new = new[: new.index(tokenizer.eos_token_id)] if tokenizer.eos_token_id in new else new
        text = tokenizer.decode(new, skip_special_tokens=True)
        return text[: min([text.find(s) for s in stop if s in text], default=len(text))]

    words = reference(prompts[1], []).split()
    assert words, "the beam answer is empty: no stop string to take from it"
    stop = [words[len(words) // 2]]
    (workdir / "prompts.jsonl").write_text(
        "".join(json.dumps({"id": f"p{n}", "prompt": p}, ensure_ascii=False) + "\n" for n, p in enumerate(prompts)),
        encoding="utf-8",
    )
    args = ["generate", "--base", ref, "--prompts", "prompts.jsonl", "--max-new-tokens", NEW_TOKENS, "--quiet"]
    args += [f"--{k.replace('_', '-')}={v}" for k, v in settings.items()] + ["--stop", stop[0], "--out", "out.jsonl"]
    code, _out, err = run_cli([*args, "--batch-size", 3])
    assert code == 0, err
    records = {r["prompt_id"]: r for r in _read("out.jsonl")}
    outputs = [records[f"p{n}"]["output"] for n in range(3)]
    assert outputs == [reference(p, stop) for p in prompts] and not any(stop[0] in o for o in outputs)
