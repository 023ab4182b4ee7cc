"""`harness train --sweep` → `harness eval --sweep` → `harness report` end to end on the tiny model
(real 4-bit QLoRA on CPU, a few steps per point): one adapter per point with the point's settings
(read back with peft's own LoraConfig), a failed point recorded while the others finish, bad values
refused before anything trains, and the sweep's adapters scored and plotted from one eval."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from support import harness, read_json

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
FEW_STEPS = ["--set", "training.max_steps=2", "--set", "data.limit=8", "--set", "training.save_steps=1000"]


@pytest.fixture(scope="module")
def rank_sweep(tmp_path_factory, harness_cache):
    directory = tmp_path_factory.mktemp("sweeps") / "rank"
    code, out, err = harness("train", "--sweep", "lora.r=4,8,16", *FEW_STEPS, "--output-dir", directory)
    return code, out, err, directory


@pytest.fixture(scope="module")
def sweep_eval(rank_sweep, tmp_path_factory):
    _code, _out, _err, directory = rank_sweep
    runs = tmp_path_factory.mktemp("sweep-runs")
    suite = REPO / "suites" / "perplexity_ko.yaml"
    code, out, err = harness(
        "eval", suite, "--sweep", directory, "--limit", "2", "--set", "bootstrap.resamples=50", "--out", runs
    )
    assert code == 0, err
    return out, next(runs.iterdir())


def test_rank_sweep_trains_one_adapter_per_point(rank_sweep):
    from peft import LoraConfig

    code, out, err, directory = rank_sweep
    assert code == 0, err
    for i, name in enumerate(("r=4", "r=8", "r=16"), 1):
        assert f"sweep point {i}/3: {name}\n" in out
    record = read_json(directory / "sweep.json")
    assert record["fields"] == {"lora.r": [4, 8, 16]}
    assert [p["name"] for p in record["points"]] == ["r=4", "r=8", "r=16"]
    for point, rank in zip(record["points"], (4, 8, 16)):
        assert point["status"] == "ok" and point["error"] is None
        assert point["values"] == {"lora.r": rank}
        assert isinstance(point["train_loss"], float) and point["runtime_s"] > 0 and point["steps"] == 2
        adapter = directory / point["dir"]
        assert LoraConfig.from_pretrained(str(adapter)).r == rank
        assert read_json(adapter / "train_record.json")["config"]["lora"]["r"] == rank
    assert re.search(r"^r=16\s+ok\s+\d+\.\d{4}", out, re.M), out  # the summary table


def test_failed_point_is_recorded_the_others_finish_and_resume_retries_it(tmp_path, harness_cache):
    directory = tmp_path / "lr"
    argv = ["train", "--sweep", "training.learning_rate=0.002,1e30", "--set", "training.max_steps=3"]
    argv += ["--set", "data.limit=8", "--output-dir", directory]
    code, out, err = harness(*argv)
    assert code == 1, err
    assert "1 of 2 sweep points failed: learning_rate=1e30" in err
    record = read_json(directory / "sweep.json")
    good, bad = record["points"]
    assert good["status"] == "ok" and (directory / good["dir"] / "adapter_model.safetensors").is_file()
    assert bad["status"] == "failed" and "NaN or infinite" in bad["error"] and "\n" not in bad["error"]
    assert not (directory / bad["dir"] / "adapter_model.safetensors").exists()
    weights = hashlib.sha256((directory / good["dir"] / "adapter_model.safetensors").read_bytes()).hexdigest()

    code, out, err = harness(*argv, "--resume")
    assert code == 1, err
    assert "sweep point 1/2: learning_rate=0.002 (finished earlier; skipped)" in out
    assert "sweep point 2/2: learning_rate=1e30\n" in out
    assert hashlib.sha256((directory / good["dir"] / "adapter_model.safetensors").read_bytes()).hexdigest() == weights
    assert [p["status"] for p in read_json(directory / "sweep.json")["points"]] == ["ok", "failed"]

    # a point's own directory is not a sweep
    code, _out, err = harness("eval", REPO / "suites" / "perplexity_ko.yaml", "--sweep", directory / good["dir"])
    assert code == 2 and "no sweep.json" in err


def test_eval_refuses_a_sweep_without_a_finished_point(tmp_path, harness_cache):
    directory = tmp_path / "nan"
    code, _out, err = harness(
        "train",
        "--sweep",
        "training.learning_rate=1e30",
        "--set",
        "training.max_steps=3",
        "--set",
        "data.limit=8",
        "--output-dir",
        directory,
    )
    assert code == 1, err
    code, _out, err = harness("eval", REPO / "suites" / "perplexity_ko.yaml", "--sweep", directory, "--out", tmp_path)
    assert code == 2 and "no finished point to evaluate (learning_rate=1e30: failed)" in err, err
    assert len(err.strip().splitlines()) == 1 and not list(tmp_path.glob("perplexity*"))


@pytest.mark.parametrize(
    ("option", "says"),
    [
        ("lora.r=4,-1", "--sweep lora.r=-1: "),
        ("lora.rank=4,8", "did you mean 'r'"),
        ("output_dir=a,b", "cannot be swept"),
        ("lora.r=4,4.0", "the same value as an earlier one"),
        ("lora.r=", "expected FIELD=V1,V2"),
    ],
)
def test_bad_sweep_value_is_refused_before_training(tmp_path, option, says):
    code, out, err = harness("train", "--sweep", option, *FEW_STEPS, "--output-dir", tmp_path / "sw")
    assert code == 2
    assert says in err and len(err.strip().splitlines()) == 1, err
    assert "sweep point" not in out and not (tmp_path / "sw").exists()


def test_second_sweep_into_the_same_directory_is_refused(rank_sweep):
    _code, _out, _err, directory = rank_sweep
    code, _out, err = harness("train", "--sweep", "lora.r=4,8,16", *FEW_STEPS, "--output-dir", directory)
    assert code == 2 and "already holds a sweep" in err and "--resume" in err


def test_eval_sweep_scores_base_and_every_adapter_in_one_run(rank_sweep, sweep_eval):
    _code, _out, _err, directory = rank_sweep
    out, run = sweep_eval
    assert "× 4 models [base, r=4, r=8, r=16]" in out
    results = read_json(run / "results.json")
    assert list(results["metrics"]) == ["base", "r=4", "r=8", "r=16"]
    paths = {m["name"]: m.get("path") for m in results["models"]}
    assert paths["r=8"] == str(directory / "r=8")
    assert results["sweep"]["fields"] == {"lora.r": [4, 8, 16]}
    assert results["sweep"]["points"] == {"r=4": {"lora.r": 4}, "r=8": {"lora.r": 8}, "r=16": {"lora.r": 16}}
    assert read_json(run / "config.json")["sweep"] == results["sweep"]


def test_report_plots_each_metric_against_the_swept_field(sweep_eval, tmp_path):
    _out, run = sweep_eval
    code, _out, err = harness("report", run, "-o", tmp_path / "page.html", "--md", tmp_path / "page.md")
    assert code == 0, err
    results = read_json(run / "results.json")
    ppl = {name: results["metrics"][name]["perplexity"]["value"] for name in ("r=4", "r=8", "r=16")}
    best = min(ppl, key=ppl.get)  # perplexity: lower is better
    html = (tmp_path / "page.html").read_text(encoding="utf-8")
    section = html[html.index('id="sweep-charts"') : html.index('id="sweep-table"')]
    assert section.count('<figure class="chart sweep"') == 2  # perplexity and bits per byte
    figure = section[section.index('data-metric="perplexity"') :]
    figure = figure[: figure.index("</figure>")]
    assert re.findall(r'class="point best" data-point="([^"]+)"', figure) == [best]
    assert f'data-base="{results["metrics"]["base"]["perplexity"]["value"]}"' in figure
    assert figure.count('class="whisker"') == 3 * 3  # each point's interval
    md = (tmp_path / "page.md").read_text(encoding="utf-8")
    best_rows = [line for line in md.splitlines() if line.startswith(f"| <code>{best}</code>")]
    assert len(best_rows) == 1 and best_rows[0].count("★") >= 1
