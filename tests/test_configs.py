"""The shipped configs: valid, each with its launch command, the tutorials' with the tutorials' settings, and
never training on a set a shipped suite evaluates."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
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


CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_config_is_valid_and_names_its_launch_command(path):
    from harness.config import TrainConfig, load_config
    from harness.data.prompts import load_template
    from harness.train.selection import check_selection

    config = load_config(TrainConfig, path, {})
    check_selection(config)  # early stopping / keep: best settings that hold together
    d = config.data
    template = load_template(d.template, d.prompt, d.response)
    assert template.response is not None or d.loss_on == "all"
    header = path.read_text(encoding="utf-8").split("\nname:")[0]
    assert f"harness train configs/{path.name}" in header


def test_the_tutorial_configs_have_the_tutorials_settings():
    from harness.config import TrainConfig, load_config

    for name in ("qlora-llama2-chat-ko.yaml", "qlora-7b-korquad.yaml"):
        config = load_config(TrainConfig, REPO / "configs" / name, {})
        lora, t = config.lora, config.training
        assert (lora.r, lora.alpha, lora.dropout) == (64, 16, 0.1)
        assert (t.learning_rate, t.weight_decay, t.max_grad_norm, t.warmup) == (2e-4, 0.001, 0.3, 0.03)
        assert (t.optimizer, t.batch_size, t.group_by_length) == ("paged_adamw_32bit", 4, True)
        assert (config.data.template, config.data.path.endswith(".json")) == ("text", True)


def test_configs_named_in_presets_and_docs_exist():
    texts = [p.read_text(encoding="utf-8") for p in (REPO / "harness" / "data" / "presets").glob("*.yaml")]
    texts += [p.read_text(encoding="utf-8") for p in [REPO / "README.md", *(REPO / "docs").glob("*.md")]]
    named = {m for text in texts for m in re.findall(r"configs/qlora-[\w.-]+\.yaml", text)}
    assert named and all((REPO / m).is_file() for m in named), sorted(m for m in named if not (REPO / m).is_file())
