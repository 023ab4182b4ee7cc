"""The tutorials' own training files, unconverted: a JSON array of `{"text": ...}` rows in Llama-2-chat's
`<s>[INST] ... [/INST] ... </s>` layout, and one in the KorQuAD instruction tutorial's
`### Instruction: ... ### Response: ...` layout, each trained on for two steps with template `text`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

LLAMA2_CHAT = [
    {"text": "<s>[INST] 대한민국의 수도는 어디인가요? [/INST] 대한민국의 수도는 서울입니다. </s>"},
    {"text": "<s>[INST] 한글을 만든 사람은 누구인가요? [/INST] 세종대왕이 한글을 만들었습니다. </s>"},
    {"text": "<s>[INST] 가장 높은 산은? [/INST] 에베레스트산입니다. </s>"},
]
KORQUAD_INSTRUCTION = [
    {
        "text": "Below is an instruction that describes a task. Write a response that appropriately completes "
        "the request. ### Instruction: 1989년 2월 15일 여의도 농민 폭력 시위를 주도한 혐의로 지명수배된 사람의 "
        "이름은? ### Response: 임종석"
    },
    {
        "text": "Below is an instruction that describes a task. Write a response that appropriately completes "
        "the request. ### Instruction: 정부의 헌법개정안 준비 과정에 대해서 청와대 비서실이 아니라 공개적으로 "
        "토론에 붙일 것을 주장한 기관은? ### Response: 국무회의"
    },
]


@pytest.mark.parametrize("rows", [LLAMA2_CHAT, KORQUAD_INSTRUCTION], ids=["llama2-chat", "korquad-instruction"])
def test_tutorial_json_array_trains_as_is(rows, workdir, run_cli, harness_cache):
    (workdir / "train.json").write_text(json.dumps(rows, ensure_ascii=False, indent=2), encoding="utf-8")
    argv = ["train", "--data", "train.json", "--output-dir", "out"]
    for option in ("data.template=text", "data.loss_on=all", "data.validation_fraction=0", "training.max_steps=2"):
        argv += ["--set", option]
    code, _, err = run_cli(argv)
    assert code == 0, err
    record = json.loads((workdir / "out" / "train_record.json").read_text(encoding="utf-8"))
    assert record["data"]["format"] == "json" and record["data"]["examples"] == len(rows)
    assert record["global_steps"] == 2 and all(isinstance(h["loss"], float) for h in record["history"])
    assert (workdir / "out" / "adapter_model.safetensors").is_file()


def test_eval_limit_takes_the_first_questions_of_a_json_array(workdir, run_cli, harness_cache):
    """ "The first 2 questions" of a JSON array of QA records: `--limit` sets dataset.limit, the suite's
    (here overridden) `sample: first` says which."""
    rows = [{"context": f"문맥 {i}", "question": f"질문 {i}?", "answers": [f"답 {i}"]} for i in range(1, 6)]
    (workdir / "qa.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    suite = Path(__file__).resolve().parents[2] / "suites" / "korquad_sample.yaml"
    argv = ["eval", str(suite), "--data", "qa.json", "--limit", "2", "--set", "dataset.sample=first"]
    code, _, err = run_cli([*argv, "--out", "runs", "--run-id", "first"])
    assert code == 0, err
    records = (workdir / "runs" / "first" / "records" / "base.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["id"] for line in records] == ["1", "2"]
    assert [json.loads(line)["references"] for line in records] == [["답 1"], ["답 2"]]
