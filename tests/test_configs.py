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


def test_kobart_dialogue_config_is_valid_and_its_template_reads_a_dialogue_row():
    from harness.config import TrainConfig, load_config
    from harness.data.prompts import load_template

    config = load_config(TrainConfig, REPO / "configs" / "qlora-kobart-dialogue.yaml", {})
    assert config.training.batch_size == "find" and config.data.max_target_length == 200
    template = load_template(config.data.template, config.data.prompt, config.data.response)
    row = {"document": "A: 내일 몇 시에 만나?\nB: 열 시.", "summary": "두 사람은 내일 열 시에 만나기로 했다."}
    assert "A: 내일 몇 시에 만나?" in template.render_prompt(row)
    assert template.render_response(row) == row["summary"]
