"""`harness train` saving a checkpoint every step → `harness eval --checkpoints` → `harness report`: each
checkpoint a column named after its step (the final adapter too), its answers those of the same directory
evaluated as a plain --adapter, the best checkpoint marked; a directory without checkpoints refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from support import harness, read_json

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SUITE = REPO / "suites" / "korquad_sample.yaml"
FAST = ["--limit", "2", "--set", "generation.max_new_tokens=6", "--set", "bootstrap.resamples=50"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, harness_cache) -> Path:
    out = tmp_path_factory.mktemp("ckpt") / "run"
    code, _out, err = harness(
        "train",
        "--output-dir",
        out,
        *("--set", "training.max_steps=3", "--set", "data.limit=8"),
        *("--set", "training.save_steps=1", "--set", "training.save_total_limit=null"),
    )
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def checkpoint_run(trained, tmp_path_factory):
    runs = tmp_path_factory.mktemp("ckpt-runs")
    code, out, err = harness("eval", SUITE, "--checkpoints", trained, *FAST, "--out", runs)
    assert code == 0, err
    assert "best checkpoint: " in out
    return next(runs.iterdir())


def test_every_checkpoint_is_a_column_with_its_step(checkpoint_run):
    results = read_json(checkpoint_run / "results.json")
    assert list(results["metrics"]) == ["base", "step-1", "step-2", "step-3", "final"]
    assert results["checkpoints"]["steps"] == {"step-1": 1, "step-2": 2, "step-3": 3, "final": 3}
    best = results["checkpoints"]["best"]
    primary = next(iter(results["metric_info"]))
    values = {n: results["metrics"][n][primary]["value"] for n in results["checkpoints"]["steps"]}
    assert best["metric"] == primary and best["value"] == max(values.values())
    assert best["name"] == next(n for n, v in values.items() if v == best["value"])
    assert set(results["deltas"]) >= {"step-1", "final"}


def test_a_checkpoints_answers_are_those_of_the_same_adapter(trained, checkpoint_run, tmp_path):
    code, _out, err = harness(
        "eval", SUITE, "--no-base", "--adapter", f"two={trained / 'checkpoints' / 'checkpoint-2'}", *FAST,
        "--out", tmp_path,
    )  # fmt: skip
    assert code == 0, err
    plain = next(tmp_path.iterdir())
    ours = [(r["id"], r["output"]) for r in _records(checkpoint_run, "step-2")]
    assert ours == [(r["id"], r["output"]) for r in _records(plain, "two")]


def test_report_plots_metrics_against_the_step(checkpoint_run, tmp_path):
    code, _out, err = harness("report", checkpoint_run, "-o", tmp_path / "r.html", "--md", tmp_path / "r.md")
    assert code == 0, err
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert '<h3 id="sweep">Checkpoints</h3>' in page and 'data-point="step-2"' in page and "★" in page
    md = (tmp_path / "r.md").read_text(encoding="utf-8")
    assert "Checkpoints (★ best checkpoint):" in md and "| <code>final</code> | 3 |" in md


def test_a_checkpoint_cut_short_while_saving_is_passed_over(trained, tmp_path):
    from harness.evaluate.checkpoints import checkpoint_models

    shutil.copytree(trained, tmp_path / "run")
    (tmp_path / "run" / "checkpoints" / "checkpoint-3" / "adapter_model.safetensors").unlink()
    adapters, _ = checkpoint_models(tmp_path / "run")
    assert list(adapters) == ["step-1", "step-2", "final"]


def test_a_directory_without_checkpoints_is_refused(tmp_path):
    code, _out, err = harness("eval", SUITE, "--checkpoints", tmp_path, *FAST, "--out", tmp_path / "runs")
    assert code == 2
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and "--checkpoints" in lines[0] and "save_steps" in lines[0], err


def _records(run: Path, name: str) -> list[dict]:
    from harness.runs.store import RunDir

    return RunDir(run).read_records(name)
