"""The reader fields in train `data` and suite `dataset`: they reach the reader, and at their defaults
they leave run ids and sweep records as they were (old runs still resume)."""

from __future__ import annotations

import json

import pytest

from harness.config import SuiteConfig, TrainConfig, validate
from harness.data.readers import Dataset
from harness.errors import ConfigError

DATASET = Dataset(source="x", path="x", format="jsonl", sha256="0" * 64, examples=[])


def suite(**dataset) -> SuiteConfig:
    return validate(
        SuiteConfig, {"name": "s", "task": "qa", "dataset": {"path": "d.jsonl", "limit": 5, **dataset}}, "s.yaml"
    )


def test_run_id_of_an_existing_suite_is_unchanged():
    from harness.evaluate.plan import run_id_for

    # The id this suite had before the reader fields existed (computed at 651c71b).
    assert run_id_for(suite(), DATASET, {}) == "s-fbf01f954d"
    assert run_id_for(suite(sample="random"), DATASET, {}) == "s-fbf01f954d"
    assert run_id_for(suite(sample="first"), DATASET, {}) != "s-fbf01f954d"
    assert run_id_for(suite(name="ko"), DATASET, {}) != "s-fbf01f954d"


def test_sweep_settings_of_an_existing_config_are_unchanged():
    from harness.runs.store import content_key
    from harness.train.sweep import plan_sweep

    # The recorded settings' key before the reader fields existed (computed at 651c71b).
    sweep = plan_sweep(None, {"output_dir": "out"}, ["lora.r=4,8"])
    assert content_key(sweep.settings)[:16] == "2c120e87a7e5d365"


@pytest.mark.parametrize("field, value", [("sample", "last"), ("format", "xml"), ("revision", 3)])
def test_reader_fields_are_validated(field, value):
    with pytest.raises(ConfigError, match=f"data.{field}"):
        validate(TrainConfig, {"data": {field: value}}, "t.yaml")


def test_suite_sample_and_limit_reach_the_reader(tmp_path):
    from harness.evaluate.plan import resolve_dataset

    rows = [{"context": f"c{i}", "question": f"q{i}", "answer": f"a{i}"} for i in range(10)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    first = resolve_dataset(suite(path=str(tmp_path / "d.jsonl"), limit=3, sample="first"), "s.yaml")
    assert [e["question"] for e in first.examples] == ["q0", "q1", "q2"]
    drawn = resolve_dataset(suite(path=str(tmp_path / "d.jsonl"), limit=3), "s.yaml")
    assert len(drawn.examples) == 3 and [e["question"] for e in drawn.examples] != ["q0", "q1", "q2"]


def test_train_data_options_reach_the_reader(tmp_path):
    from harness.train.data import build_examples

    rows = [{"text": f"row {i}"} for i in range(10)]
    (tmp_path / "d.json").write_text(json.dumps(rows))
    data = {"path": str(tmp_path / "d.json"), "template": "text", "loss_on": "all", "limit": 4, "sample": "first"}
    config = validate(TrainConfig, {"data": {**data, "validation_fraction": 0}}, "t.yaml")
    train_rows, validation, info = build_examples(config)
    assert train_rows == [{"text": f"row {i}"} for i in range(4)] and validation == []
    assert info["format"] == "json"


def test_train_validation_split_of_a_saved_dataset_dict(tmp_path):
    import datasets

    from harness.train.data import build_examples

    splits = {name: [{"text": f"{name} {i}"} for i in range(3)] for name in ("train", "test")}
    datasets.DatasetDict({k: datasets.Dataset.from_list(v) for k, v in splits.items()}).save_to_disk(
        str(tmp_path / "d")
    )
    data = {"path": str(tmp_path / "d"), "template": "text", "loss_on": "all", "validation_split": "test"}
    train_rows, validation, info = build_examples(validate(TrainConfig, {"data": data}, "t.yaml"))
    assert train_rows == splits["train"] and validation == splits["test"] and info["format"] == "disk"


def test_train_data_files_reach_datasets_load_dataset(tmp_path):
    from harness.train.data import build_examples

    rows = [{"text": f"row {i}"} for i in range(3)]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = {"path": "json", "data_files": str(tmp_path / "rows.jsonl"), "template": "text", "loss_on": "all"}
    train_rows, _, info = build_examples(validate(TrainConfig, {"data": {**data, "validation_fraction": 0}}, "t.yaml"))
    assert train_rows == rows and info["format"] == "hub"
