"""`harness generate` and `harness eval` on every decoder family of the zoo, both engines, batch 1
and batch 8, with and without a repetition penalty and the chat template: every greedy answer, its
prompt's token count and its length equal batch-1 `generate` on the 4-bit base + PeftModel, with
the prompt tokenized as the tokenizer itself does it (`apply_chat_template(tokenize=True)`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from zoo_helpers import ADAPTER, DECODERS, ENCODER_DECODERS, NEW_TOKENS, PROMPTS, WITH_CHAT_TEMPLATE, answer, read_jsonl

pytestmark = pytest.mark.slow
FIELDS = ("output", "generated_tokens", "prompt_tokens")
PENALTY = 1.3


def _mismatches(records: list[dict], expected_for) -> list[str]:
    wrong = []
    for record in records:
        expected = expected_for(record)
        wrong += [
            f"{record.get('model', record.get('column'))} {record.get('prompt_id', record.get('id'))} {f}: "
            f"harness {record[f]!r} vs reference {expected[f]!r}"
            for f in FIELDS
            if record[f] != expected[f]
        ]
    return wrong


@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("engine", ["fast", "plain"])
@pytest.mark.parametrize("chat", [False, True], ids=["text", "chat"])
@pytest.mark.parametrize("family", DECODERS)
def test_generate_equals_reference(family, chat, engine, batch, zoo_adapter, reference, prompts_file, run_cli):
    adapter, _record = zoo_adapter(family)
    args = [
        "generate",
        "--base",
        f"tiny:{family}",
        "--adapter",
        f"{ADAPTER}={adapter}",
        "--prompts",
        prompts_file,
        "--max-new-tokens",
        NEW_TOKENS,
        "--compare",
        f"repetition_penalty=1.0,{PENALTY}",
        "--engine",
        engine,
        "--batch-size",
        batch,
        "--out",
        "out.jsonl",
        "--quiet",
    ] + (["--chat"] if chat else [])
    code, _out, err = run_cli(args)
    if chat and family not in WITH_CHAT_TEMPLATE:
        assert code == 2 and "no chat template" in err, err  # refused by name, not answered wrongly
        return
    assert code == 0, err
    records = read_jsonl("out.jsonl")
    assert len(records) == len(PROMPTS) * 2 * 2
    ref = reference(family)
    texts = {f"p{n}": p for n, p in enumerate(PROMPTS)}

    def expected(record):
        penalty = record["settings"]["repetition_penalty"]
        return ref.answer(
            texts[record["prompt_id"]], adapter=record["model"] == ADAPTER, chat=chat, repetition_penalty=penalty
        )

    wrong = _mismatches(records, expected)
    assert not wrong, f"{len(wrong)} differences:\n" + "\n".join(wrong[:12])


def _suite(path: Path, family: str, chat: bool) -> Path:
    path.write_text(
        f"""name: zoo-qa
task: qa
dataset:
  path: builtin:korquad_sample
  limit: 8
prompt:
  template: qa-ko
  chat: {str(chat).lower()}
generation:
  max_new_tokens: {NEW_TOKENS}
generation_grid:
  repetition_penalty: [1.0, {PENALTY}]
metrics: [exact_match, f1]
models:
  base: tiny:{family}
""",
        encoding="utf-8",
    )
    return path


def _eval_records(run_cli, workdir: Path, family: str, adapter: Path, chat: bool, engine: str, batch: int) -> dict:
    """column → records of one `harness eval` run."""
    name = f"{'chat' if chat else 'text'}-{engine}-{batch}"
    suite = _suite(workdir / f"{name}.yaml", family, chat)
    code, _out, err = run_cli(
        [
            "eval",
            suite,
            "--adapter",
            f"{ADAPTER}={adapter}",
            "--engine",
            engine,
            "--batch-size",
            batch,
            "--out",
            workdir / "runs",
            "--run-id",
            name,
        ]
    )
    assert code == 0, err
    return {p.stem: read_jsonl(p) for p in (workdir / "runs" / name / "records").glob("*.jsonl")}


@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("engine", ["fast", "plain"])
@pytest.mark.parametrize("family", DECODERS)
def test_eval_equals_reference(family, engine, batch, zoo_adapter, reference, run_cli, workdir):
    adapter, _record = zoo_adapter(family)
    ref = reference(family)
    plain = _eval_records(run_cli, workdir, family, adapter, False, engine, batch)
    assert len(plain) == 4 and all(len(r) == 8 for r in plain.values())
    # The chat run wraps the same prompts: the text run's records name them.
    raw = {r["id"]: r["prompt"] for r in plain["base@repetition_penalty=1.0"]}
    runs = {False: plain}
    if family in WITH_CHAT_TEMPLATE:
        runs[True] = _eval_records(run_cli, workdir, family, adapter, True, engine, batch)
    wrong = []
    for chat, columns in runs.items():
        for column, records in columns.items():
            model, _, variant = column.partition("@")
            penalty = float(variant.removeprefix("repetition_penalty="))

            def expected(record, model=model, penalty=penalty, chat=chat):
                return ref.answer(raw[record["id"]], adapter=model == ADAPTER, chat=chat, repetition_penalty=penalty)

            wrong += [f"chat={chat} {column}: {w}" for w in _mismatches(records, expected)]
    assert not wrong, f"{len(wrong)} differences:\n" + "\n".join(wrong[:12])


@pytest.mark.parametrize("engine", ["fast", "plain"])
def test_answers_end_where_the_generation_config_ends_them(engine, tmp_path, prompts_file, run_cli):
    """Llama-3 and Qwen2 instruction models end a turn on their tokenizer's eos and a text on a second
    token that only their generation config names; `generate` stops on both, so harness must too. A
    copy of tiny:llama3 whose generation config names a token it does write shows it."""
    import json
    import shutil

    from zoo_helpers import greedy, load_reference, prompt_ids

    from harness.model.tiny import tiny_model_path

    base = tmp_path / "llama3-ends"
    shutil.copytree(tiny_model_path("tiny:llama3"), base)
    model, tokenizer = load_reference(str(base))
    written = greedy(model, tokenizer, prompt_ids(tokenizer, PROMPTS[1], chat=False))
    config_file = base / "generation_config.json"
    config = json.loads(config_file.read_text())
    config["eos_token_id"] = [tokenizer.eos_token_id, written[2]]
    config_file.write_text(json.dumps(config))
    model, tokenizer = load_reference(str(base))
    code, _out, err = run_cli(
        [
            "generate",
            "--base",
            base,
            "--prompts",
            prompts_file,
            "--max-new-tokens",
            NEW_TOKENS,
            "--engine",
            engine,
            "--batch-size",
            8,
            "--out",
            "out.jsonl",
            "--quiet",
        ]
    )
    assert code == 0, err
    records = {r["prompt_id"]: r for r in read_jsonl("out.jsonl")}
    assert records["p1"]["generated_tokens"] <= 2 and records["p1"]["stop_reason"] == "eos"
    for n, text in enumerate(PROMPTS):
        expected = greedy(model, tokenizer, prompt_ids(tokenizer, text, chat=False))
        assert records[f"p{n}"]["generated_tokens"] == len(expected)
        assert records[f"p{n}"]["output"] == tokenizer.decode(expected, skip_special_tokens=True)


@pytest.mark.parametrize("engine", ["fast", "plain"])
@pytest.mark.parametrize("family", sorted(WITH_CHAT_TEMPLATE))
def test_chat_turns_equal_reference(family, engine, zoo_adapter, reference, run_cli, monkeypatch):
    """`harness chat`, two turns streamed: each answer equals batch-1 `generate` on the conversation
    so far as the tokenizer's own chat template tokenizes it (one BOS, the first answer in the history)."""
    import io
    import re

    from zoo_helpers import greedy

    adapter, _record = zoo_adapter(family)
    turns = [PROMPTS[1], PROMPTS[4]]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join([f"/model {ADAPTER}", *turns]) + "\n"))
    code, out, err = run_cli(
        [
            "chat",
            "--base",
            f"tiny:{family}",
            "--adapter",
            f"{ADAPTER}={adapter}",
            "--max-new-tokens",
            NEW_TOKENS,
            "--repetition-penalty",
            PENALTY,
            "--engine",
            engine,
        ]
    )
    assert code == 0, err
    answers = re.findall(rf"{ADAPTER}> (.*?)\n  \((\d+) tokens", out, re.S)
    assert len(answers) == 2, out
    ref = reference(family)
    messages = []
    for user, (text, tokens) in zip(turns, answers):
        messages.append({"role": "user", "content": user})
        ids = ref.tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
        ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
        expected = greedy(ref.model, ref.tokenizer, ids, PENALTY)
        assert (text, int(tokens)) == (ref.tokenizer.decode(expected, skip_special_tokens=True), len(expected))
        messages.append({"role": "assistant", "content": text})


# Every engine runs the plain path on an encoder-decoder: the default one, prompts of different
# lengths batched together, against each single prompt.
@pytest.mark.parametrize(("engine", "batch"), [("auto", 8)])
@pytest.mark.parametrize("family", ENCODER_DECODERS)
def test_encoder_decoder_generate_and_eval_equal_reference(
    family, engine, batch, seq2seq_setup, prompts_file, run_cli, workdir
):
    """T5, mT5, BART and mBART (the plain path whatever the engine): `harness generate` on the zoo's prompts and
    `harness eval` on the QA sample, base and adapter (a peft adapter made on the 4-bit base), equal
    batch-1 `generate` on each single un-padded prompt."""
    adapter, model, tokenizer = seq2seq_setup(f"tiny:{family}")
    args = ["generate", "--base", f"tiny:{family}", "--adapter", f"{ADAPTER}={adapter}", "--prompts", prompts_file]
    args += ["--max-new-tokens", NEW_TOKENS, "--compare", f"repetition_penalty=1.0,{PENALTY}", "--engine", engine]
    code, _out, err = run_cli([*args, "--batch-size", batch, "--out", "out.jsonl", "--quiet"])
    assert code == 0, err
    records = read_jsonl("out.jsonl")
    assert len(records) == len(PROMPTS) * 2 * 2
    texts = {f"p{n}": p for n, p in enumerate(PROMPTS)}

    def expected(record, adapter_on, penalty, text):
        if adapter_on:
            return answer(model, tokenizer, text, False, penalty)
        with model.disable_adapter():
            return answer(model, tokenizer, text, False, penalty)

    wrong = _mismatches(
        records,
        lambda r: expected(r, r["model"] == ADAPTER, r["settings"]["repetition_penalty"], texts[r["prompt_id"]]),
    )
    columns = _eval_records(run_cli, workdir, family, adapter, False, engine, batch)
    for column, column_records in columns.items():
        model_name, _, variant = column.partition("@")
        penalty = float(variant.removeprefix("repetition_penalty="))
        wrong += _mismatches(
            column_records, lambda r, m=model_name, p=penalty: expected(r, m == ADAPTER, p, r["prompt"])
        )
    assert not wrong, f"{len(wrong)} differences:\n" + "\n".join(wrong[:12])
