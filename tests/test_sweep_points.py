"""A sweep's points before anything trains: values read as `--set` reads them (lists included),
a grid's combinations, and point names that are safe folder names and never collide."""

from __future__ import annotations

from pathlib import Path

from harness.config.loader import check_name
from harness.train.sweep import parse_sweep_option, plan_sweep

PRESET = str(Path(__file__).resolve().parents[1] / "harness" / "data" / "presets" / "tiny-ko-qa.yaml")


def test_values_are_yaml_and_brackets_keep_their_commas():
    field, values = parse_sweep_option("lora.target_modules=[q_proj,v_proj],all-linear")
    assert field == "lora.target_modules"
    assert values == [("[q_proj,v_proj]", ["q_proj", "v_proj"]), ("all-linear", "all-linear")]
    assert parse_sweep_option("training.learning_rate=1e-4,0.0002")[1] == [("1e-4", "1e-4"), ("0.0002", 0.0002)]


def test_grid_points_first_field_slowest(tmp_path):
    sweep = plan_sweep(PRESET, {"output_dir": str(tmp_path / "sw")}, ["lora.r=4,8", "lora.alpha=16,32"])
    assert [p.name for p in sweep.points] == ["r=4,alpha=16", "r=4,alpha=32", "r=8,alpha=16", "r=8,alpha=32"]
    assert sweep.fields == {"lora.r": [4, 8], "lora.alpha": [16.0, 32.0]}
    point = sweep.points[1]
    assert (point.config.lora.r, point.config.lora.alpha) == (4, 32.0)
    assert point.values == {"lora.r": 4, "lora.alpha": 32.0}
    assert Path(point.config.output_dir) == tmp_path / "sw" / "r=4,alpha=32"
    assert "r" not in sweep.settings["lora"] and sweep.settings["lora"]["target_modules"] == "all-linear"


def test_point_names_are_safe_and_distinct(tmp_path):
    sweep = plan_sweep(
        PRESET, {"output_dir": str(tmp_path / "sw")}, ["data.path=a/b.jsonl,a_b.jsonl", "training.seed=1,2"]
    )
    names = [p.name for p in sweep.points]
    assert len(set(names)) == 4
    for name in names:
        check_name(name, "point")
        assert "/" not in name and (tmp_path / "sw" / name).parent == tmp_path / "sw"
    # two fields ending alike are named in full
    sweep = plan_sweep(PRESET, {"output_dir": str(tmp_path / "s2")}, ["training.seed=1", "data.seed=2"])
    assert sweep.points[0].name == "training.seed=1,data.seed=2"
