"""The shipped configs: valid, and never training on a set a shipped suite evaluates."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def test_qlora_ko_qa_trains_on_korquad_train_not_the_evaluated_dev_set():
    from harness.config import TrainConfig, load_config
    from harness.data.prompts import load_template

    config = load_config(TrainConfig, REPO / "configs" / "qlora-ko-qa.yaml", {})
    assert (config.data.path, config.data.format, config.data.split) == ("squad_kor_v1", "hub", "train")
    evaluated = yaml.safe_load((REPO / "suites" / "korquad.yaml").read_text(encoding="utf-8"))
    assert evaluated["dataset"]["path_env"] == "KORQUAD_DEV" and "dev" not in config.data.path.lower()
    # A row as the hub dataset holds it: answers is {text: [...], answer_start: [...]}.
    row = {
        "context": "서울은 한국의 수도이다.",
        "question": "한국의 수도는?",
        "answers": {"text": ["서울"], "answer_start": [0]},
    }
    template = load_template(config.data.template, config.data.prompt, config.data.response)
    assert template.render_response(row) == "서울"
