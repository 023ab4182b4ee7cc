"""`harness generate` on the real stack (tiny model, 4-bit on CPU): the same answers as the eval
engine whatever the batch size, the streamed single answer included; a grid gives one record per
prompt × model × variant with its settings; prompts from files and standard input."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from eval_helpers import ADAPTER_NAME, quiet

TINY = "tiny:llama-ko"
FIELDS = ("output", "generated_tokens", "stop_reason", "prompt_tokens")


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def eval_reference(tmp_path_factory, gen_adapter, suites_dir, harness_cache):
    """A `harness eval` run (6 KorQuAD samples, base + adapter) and the raw examples it used."""
    from eval_helpers import one_torch_thread

    from harness.config import SuiteConfig, load_config
    from harness.evaluate.plan import resolve_dataset
    from harness.evaluate.run import run_eval

    root = tmp_path_factory.mktemp("gen-eval")
    source = suites_dir / "korquad_sample.yaml"
    suite = load_config(SuiteConfig, source, {"dataset.limit": 6, "generation.max_new_tokens": 12, "batch_size": 4})
    suite.models.adapters = {ADAPTER_NAME: str(gen_adapter)}
    with one_torch_thread():
        result = run_eval(suite, str(source), out_root=root, run_id="ev", log=quiet, progress_bars=False)
    examples = resolve_dataset(suite, str(source)).examples
    prompts = root / "examples.jsonl"
    prompts.write_text(
        "".join(
            json.dumps({k: e[k] for k in ("id", "context", "question")}, ensure_ascii=False) + "\n" for e in examples
        ),
        encoding="utf-8",
    )
    records = {m: read_jsonl(result.run_dir / "records" / f"{m}.jsonl") for m in ("base", ADAPTER_NAME)}
    return {"records": records, "prompts": prompts, "source": source}


@pytest.mark.parametrize("batch_size", [1, 4])
def test_batched_generate_equals_eval_engine(eval_reference, gen_adapter, run_cli, batch_size):
    ref = eval_reference
    code, out, err = run_cli(
        [
            "generate",
            "--base",
            TINY,
            "--adapter",
            f"{ADAPTER_NAME}={gen_adapter}",
            "--suite",
            ref["source"],
            "--prompts",
            ref["prompts"],
            "--max-new-tokens",
            12,
            "--batch-size",
            batch_size,
            "--out",
            "out.jsonl",
            "--quiet",
        ]
    )
    assert code == 0, err
    records = read_jsonl("out.jsonl")
    assert len(records) == 12
    mismatches = []
    for model, expected in ref["records"].items():
        got = {r["prompt_id"]: r for r in records if r["model"] == model}
        assert set(got) == {r["id"] for r in expected}
        for e in expected:
            g = got[e["id"]]
            assert g["prompt"] == e["prompt"]  # the suite's template filled from the file's fields
            assert g["repetition"] == e["repetition"]
            mismatches += [f"{model} {e['id']} {f}: eval {e[f]!r} vs generate {g[f]!r}" for f in FIELDS if e[f] != g[f]]
    assert not mismatches, "\n".join(mismatches)
    assert "base" in out and "distinct-1" in out  # the summary table


@pytest.mark.parametrize("model", ["base", ADAPTER_NAME])
def test_streamed_single_answer_equals_eval_engine(eval_reference, gen_adapter, run_cli, model):
    expected = eval_reference["records"][model][2]
    models = ["--no-base", "--adapter", f"{ADAPTER_NAME}={gen_adapter}"] if model != "base" else []
    code, out, err = run_cli(
        [
            "generate",
            "--base",
            TINY,
            *models,
            "--prompt",
            expected["prompt"],
            "--max-new-tokens",
            12,
            "--stop",
            "\\n",
            "--out",
            "one.jsonl",
        ]
    )
    assert code == 0, err
    (record,) = read_jsonl("one.jsonl")
    for field in FIELDS:
        assert record[field] == expected[field], field
    assert record["model"] == model and record["settings"]["stop"] == ["\n"]
    # streamed to the terminal, followed by the statistics line
    assert expected["output"] in out
    assert f"{expected['generated_tokens']} tokens" in out and "tok/s" in out and "distinct-2" in out


def test_grid_gives_one_record_per_model_and_variant(gen_adapter, run_cli):
    code, out, err = run_cli(
        [
            "generate",
            "--base",
            TINY,
            "--adapter",
            f"{ADAPTER_NAME}={gen_adapter}",
            "--prompt",
            "대한민국의 수도는",
            "--prompt",
            "The capital of Korea is",
            "--max-new-tokens",
            6,
            "--compare",
            "repetition_penalty=1.0,1.3",
            "--compare",
            "no_repeat_ngram_size=0,2",
            "--out",
            "grid.jsonl",
        ]
    )
    assert code == 0, err
    records = read_jsonl("grid.jsonl")
    assert len(records) == 2 * 2 * 4
    keys = {
        (r["prompt_id"], r["model"], r["variant"]["repetition_penalty"], r["variant"]["no_repeat_ngram_size"])
        for r in records
    }
    assert keys == {
        (p, m, rp, n) for p in ("1", "2") for m in ("base", ADAPTER_NAME) for rp in (1.0, 1.3) for n in (0, 2)
    }
    for r in records:
        assert r["settings"]["repetition_penalty"] == r["variant"]["repetition_penalty"]
        assert r["settings"]["no_repeat_ngram_size"] == r["variant"]["no_repeat_ngram_size"]
        assert r["settings"]["max_new_tokens"] == 6
        assert r["column"] == (
            f"{r['model']}@repetition_penalty={r['variant']['repetition_penalty']},"
            f"no_repeat_ngram_size={r['variant']['no_repeat_ngram_size']}"
        )
        assert r["stop_reason"] in {"eos", "length", "stop"} and r["hit_limit"] == (r["stop_reason"] == "length")
        assert set(r["repetition"]) >= {"distinct_1", "distinct_2", "longest_repeat_len", "longest_repeat_count"}
        assert r["time_s"] > 0 and r["generated_tokens"] <= 6
    # the terminal shows every model × variant under each prompt, then the summary
    for column in {r["column"] for r in records}:
        assert f"▸ {column}" in out and column in out.split("hit limit", 1)[1]
    assert out.count("━━ prompt") == 2


def test_prompts_from_txt_jsonl_template_and_stdin(run_cli, workdir, monkeypatch):
    (workdir / "p.txt").write_text("첫 번째 질문\n\n두 번째 질문\n", encoding="utf-8")
    code, _, err = run_cli(
        ["generate", "--base", TINY, "--prompts", "p.txt", "--max-new-tokens", 2, "--out", "txt.jsonl", "--quiet"]
    )
    assert code == 0, err
    assert [(r["prompt_id"], r["prompt"]) for r in read_jsonl("txt.jsonl")] == [
        ("p.txt:1", "첫 번째 질문"),
        ("p.txt:3", "두 번째 질문"),
    ]
    (workdir / "q.jsonl").write_text(
        json.dumps({"id": "q1", "context": "서울은 수도다.", "question": "수도는?"}, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    code, _, err = run_cli(
        [
            "generate",
            "--base",
            TINY,
            "--prompts",
            "q.jsonl",
            "--template",
            "qa-ko",
            "--chat",
            "--max-new-tokens",
            2,
            "--out",
            "tpl.jsonl",
        ]
    )
    assert code == 0, err
    (record,) = read_jsonl("tpl.jsonl")
    assert record["prompt_id"] == "q1" and record["prompt"].startswith("<|user|>\n### 문맥:\n서울은 수도다.")
    assert record["prompt"].endswith("<|assistant|>\n")
    monkeypatch.setattr("sys.stdin", io.StringIO("from stdin\nsecond line\n"))
    code, _, err = run_cli(["generate", "--base", TINY, "-", "--max-new-tokens", 2, "--out", "in.jsonl", "--quiet"])
    assert code == 0, err
    assert [r["prompt"] for r in read_jsonl("in.jsonl")] == ["from stdin", "second line"]


def test_streamed_answers_reuse_the_decoder_only_for_the_same_weights_and_adapter(gen_adapter):
    """A chat's next answer takes the previous decoder (on a GPU its captured graph), but only while the
    model computes with the same weights and adapter; every answer equals one from a fresh decoder."""
    from harness.config.generation import GenerationSettings
    from harness.config.model import Quantization
    from harness.engine.generation import generate_stream
    from harness.model.adapters import attach_adapters
    from harness.model.loading import load_base
    from harness.runtime.env import detect

    models = attach_adapters(load_base(TINY, Quantization(), detect()), {ADAPTER_NAME: gen_adapter})
    tokenizer = models.base.tokenizer
    settings = GenerationSettings(max_new_tokens=12)

    def answer(name: str, prompt: str, fresh: bool = False):
        with models.use(name) as model:
            if fresh:
                model.__dict__.pop("_harness_stream_decoder", None)
            output = generate_stream(model, tokenizer, prompt, settings, lambda _text: None).output
            return output, model._harness_stream_decoder[1]

    first, second = "질문: 한국의 수도는? 답:", "질문: 부산은 어떤 도시인가? 답:"
    runs = [(ADAPTER_NAME, first), (ADAPTER_NAME, second), ("base", first), (ADAPTER_NAME, first)]
    answers, decoders = zip(*(answer(name, prompt) for name, prompt in runs))
    assert decoders[1] is decoders[0]  # same adapter, same weights: reused
    assert decoders[2] is not decoders[1] and decoders[3] is not decoders[2]  # adapter off, then on again
    for (name, prompt), output in zip(runs, answers):
        assert output == answer(name, prompt, fresh=True)[0]
