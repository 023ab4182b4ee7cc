"""The tutorials harness replaces, each as its user runs it: the tutorial's own files (unconverted) and
its own test, through harness commands with the tutorial's config from configs/, on a tiny stand-in of
its base (real 4-bit QLoRA on CPU, a few steps):

- Llama-2-chat: a JSON array of `<s>[INST] q [/INST] a </s>` texts; the test: the answer appears in
  the output (`contains`), for base and adapter side by side;
- KorQuAD instruction tuning: a JSON array of `### Instruction: ... ### Response: ...` texts; the test:
  the answer appears in the output's first line, beside exact match;
- dialogue summarization on KoBART: JSONL of `dialogue` and `summary`; ROUGE on MeCab morphemes, with
  the micro-batch found by probing.

The KorQuAD QA loop of the README's first command is pinned by tests/golden."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import harness, read_json

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
QA = [
    ("대한민국의 수도는 어디인가요?", "서울"),
    ("한글을 만든 사람은 누구인가요?", "세종대왕"),
    ("가장 높은 산은?", "에베레스트산"),
]
# On a CPU: no paged optimizer, no fp16 compute, and a few steps on the tiny stand-in.
ON_CPU = ["--set", "training.optimizer=adamw_torch", "--set", "quantization.compute_dtype=auto"]
FEW_STEPS = ["--set", "training.max_steps=3", "--set", "training.save_steps=1000"]


def write_json(path: Path, rows) -> Path:
    path.write_text(json.dumps(rows, ensure_ascii=False, indent=2), encoding="utf-8")
    return path


def write_suite(path: Path, base: str, data: Path, prompt: str, metrics: list, filters: list | None = None) -> Path:
    suite = {
        "name": path.stem,
        "task": "qa",
        "dataset": {"path": str(data)},
        "prompt": {"text": prompt},
        "generation": {"max_new_tokens": 12},
        "metrics": metrics,
        "filters": filters or [],
        "bootstrap": {"resamples": 50},
        "models": {"base": base},
    }
    path.write_text(json.dumps(suite, ensure_ascii=False), encoding="utf-8")
    return path


def contains_column(run: Path, model: str) -> list[float]:
    lines = (run / "records" / f"{model}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["metrics"]["contains"] for line in lines]


def test_llama2_chat_tutorial(tmp_path, harness_cache):
    train = write_json(tmp_path / "train.json", [{"text": f"<s>[INST] {q} [/INST] {a}입니다. </s>"} for q, a in QA])
    test = write_json(tmp_path / "test.json", [{"question": q, "answers": [a]} for q, a in QA])
    config = REPO / "configs" / "qlora-llama2-chat-ko.yaml"
    adapter, runs = tmp_path / "adapter", tmp_path / "runs"
    code, _out, err = harness(
        "train", config, "--base", "tiny:llama2", "--data", train, *ON_CPU, *FEW_STEPS, "--output-dir", adapter
    )
    assert code == 0, err
    suite = write_suite(
        tmp_path / "llama2-chat.json", "tiny:llama2", test, "[INST] {{ question }} [/INST]", ["contains"]
    )
    code, _out, err = harness("eval", suite, "--adapter", f"chat={adapter}", "--out", runs)
    assert code == 0, err
    run = next(runs.iterdir())
    results = read_json(run / "results.json")
    for model in ("base", "chat"):
        scores = contains_column(run, model)
        assert len(scores) == len(QA) and set(scores) <= {0.0, 100.0}
        assert results["metrics"][model]["contains"]["value"] == pytest.approx(sum(scores) / len(scores))
    assert "contains" in results["deltas"]["chat"]


def test_korquad_instruction_tutorial(tmp_path, harness_cache):
    rows = [{"text": f"### Instruction: {q}\n\n### Response: {a}"} for q, a in QA]
    train = write_json(tmp_path / "train.json", rows)
    test = write_json(tmp_path / "test.json", [{"question": q, "answers": [a]} for q, a in QA])
    config = REPO / "configs" / "qlora-7b-korquad.yaml"
    adapter, runs = tmp_path / "adapter", tmp_path / "runs"
    # The tutorial's three rows hold nothing out: no early stopping or best checkpoint without validation.
    selection = ["--set", "data.validation_fraction=0", "--set", "training.early_stopping=null"]
    code, _out, err = harness(
        "train", config, "--base", "tiny:llama-ko", "--data", train, *ON_CPU, *FEW_STEPS, *selection,
        "--set", "training.keep=last", "--output-dir", adapter,
    )  # fmt: skip
    assert code == 0, err
    prompt = "### Instruction: {{ question }}\n\n### Response:"
    filters = [{"function": "first_line"}, {"function": "strip"}]
    suite = write_suite(
        tmp_path / "korquad-instruction.json", "tiny:llama-ko", test, prompt, ["contains", "exact_match"], filters
    )
    code, _out, err = harness("eval", suite, "--adapter", f"korquad={adapter}", "--out", runs)
    assert code == 0, err
    run = next(runs.iterdir())
    for line in (run / "records" / "korquad.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        assert record["prediction"] == record["output"].split("\n")[0].strip()  # the filters, as data
        assert record["metrics"]["exact_match"] <= record["metrics"]["contains"]


def test_dialogue_summarization_tutorial(tmp_path, harness_cache):
    config = REPO / "configs" / "qlora-kobart-dialogue.yaml"
    adapter, runs = tmp_path / "adapter", tmp_path / "runs"
    code, out, err = harness(
        "train", config, "--base", "tiny:bart-ko", "--data", "builtin:dialogue_summarization_ko", *ON_CPU,
        *FEW_STEPS, "--set", "data.limit=16", "--set", "data.validation_fraction=0", "--set", "training.eval_steps=null",
        "--output-dir", adapter,
    )  # fmt: skip
    assert code == 0, err
    record = read_json(adapter / "train_record.json")
    assert record["plan"]["batch_probe"]["chosen"] >= 1 and "found by probing" in out
    suite = REPO / "suites" / "summarization_dialogue_ko.yaml"
    code, _out, err = harness(
        "eval", suite, "--base", "tiny:bart-ko", "--adapter", f"kobart={adapter}", "--limit", "4",
        "--set", "generation.max_new_tokens=12", "--set", "bootstrap.resamples=50", "--out", runs,
    )  # fmt: skip
    assert code == 0, err
    results = read_json(next(runs.iterdir()) / "results.json")
    assert "rouge1[mecab]" in results["metrics"]["kobart"]
