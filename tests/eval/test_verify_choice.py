"""`verify: N` on a choice suite: the first N samples scored again on the plain path (every choice's
row in its own forward) and compared, choice by choice, with the fast path's records."""

from __future__ import annotations

import json

from eval_helpers import ADAPTER_NAME, read_records, read_results

SUITE = """
name: choice_verify
task: choice
dataset:
  path: {data}
choice:
  context: "{{{{paragraph}}}} 질문: {{{{question}}}} 답변:"
  choices: ["아니오", "예", "모름"]
  gold: label
metrics: [acc]
engine: fast
verify: 4
bootstrap: {{resamples: 20}}
"""
ROWS = [
    ("서울은 대한민국의 수도이다.", "서울은 수도인가?", 1),
    ("고래는 포유류이다.", "고래는 어류인가?", 0),
    ("물은 100도에서 끓는다.", "물은 50도에서 끓는가?", 0),
    ("한강은 서울을 지난다.", "한강은 서울에 있는가?", 1),
    ("부산은 항구 도시이다.", "부산은 내륙에 있는가?", 0),
]


def test_verify_compares_each_choices_loglikelihood_with_the_plain_path(tmp_path, eval_adapter, suite_config, eval_run):
    data = tmp_path / "data.jsonl"
    data.write_text(
        "".join(json.dumps({"paragraph": p, "question": q, "label": y}, ensure_ascii=False) + "\n" for p, q, y in ROWS),
        encoding="utf-8",
    )
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE.format(data=data), encoding="utf-8")
    result = eval_run(suite_config(path, {}, {ADAPTER_NAME: eval_adapter}), tmp_path / "runs", "v")
    verified = read_results(result.run_dir)["verify"]
    for column in ("base", ADAPTER_NAME):
        v = verified[column]
        assert (v["samples"], v["agree"], v["differ"]) == (4, 4, []), v
        assert v["max_abs_loglikelihood_difference"] < 1e-4, v
        assert "each choice's row" in v["against"] and "predictions equal" in v["summary"]
    assert len(read_records(result.run_dir, ADAPTER_NAME)) == len(ROWS)  # the records stay as they were
