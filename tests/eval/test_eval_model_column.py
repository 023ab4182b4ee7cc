"""`harness eval --model NAME=PATH`: a merged export scored as its own column beside base + adapter.
Both unquantized in fp32, the export computes what the adapter does: the same answers; its
records are keyed on the export's content, so a copy elsewhere resumes them all."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from support import harness, read_json

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SUITE = REPO / "suites" / "korquad_sample.yaml"
UNQUANTIZED = ["--set", "models.quantization.mode=none", "--set", "models.quantization.compute_dtype=fp32"]
FAST = ["--limit", "3", "--set", "generation.max_new_tokens=8", "--set", "bootstrap.resamples=50", *UNQUANTIZED]


@pytest.fixture(scope="module")
def export(eval_adapter, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("merged") / "export"
    code, _out, err = harness(
        "merge", "--base", "tiny:llama-ko", "--adapter", eval_adapter, "--out", out, "--dtype", "fp32"
    )
    assert code == 0, err
    return out


def _eval(*argv) -> tuple[int, str, str]:
    return harness("eval", SUITE, *FAST, *argv)


def _predictions(run: Path, name: str) -> list[tuple[str, str]]:
    from harness.runs.store import RunDir

    return [(r["id"], r["prediction"]) for r in RunDir(run).read_records(name)]


def test_merged_export_answers_as_base_plus_adapter(eval_adapter, export, tmp_path):
    code, _out, err = _eval("--adapter", f"adapter={eval_adapter}", "--model", f"merged={export}", "--out", tmp_path)
    assert code == 0, err
    run = next(tmp_path.iterdir())
    results = read_json(run / "results.json")
    assert list(results["metrics"]) == ["base", "adapter", "merged"]
    assert _predictions(run, "merged") == _predictions(run, "adapter")
    assert results["metrics"]["merged"] == results["metrics"]["adapter"]
    assert set(results["deltas"]) == {"adapter", "merged"}
    info = next(m for m in results["models"] if m["name"] == "merged")
    assert info["kind"] == "model" and info["quantization"]["mode"] == "none" and info["compute_dtype"] == "fp32"

    # The same content at another path: every record is reused.
    copy = tmp_path / "copy"
    shutil.copytree(export, copy)
    argv = (
        "--adapter",
        f"adapter={eval_adapter}",
        "--model",
        f"merged={copy}",
        "--out",
        tmp_path,
        "--run-id",
        run.name,
    )
    code, _out, err = _eval(*argv)
    assert code == 0, err
    again = read_json(run / "results.json")
    assert again["throughput"]["merged"]["reused"] == 3 and again["throughput"]["merged"]["samples"] == 0


def test_beside_a_4bit_base_the_export_loads_as_exported(export, tmp_path):
    argv = ["--limit", "1", "--set", "generation.max_new_tokens=4", "--set", "bootstrap.resamples=20"]
    code, _out, err = harness("eval", SUITE, *argv, "--model", f"merged={export}", "--out", tmp_path)
    assert code == 0, err
    models = {m["name"]: m for m in read_json(next(tmp_path.iterdir()) / "results.json")["models"]}
    assert models["base"]["quantization"]["mode"] == "nf4"
    assert models["merged"]["quantization"]["mode"] == "none"
    assert models["merged"]["compute_dtype"] == models["base"]["compute_dtype"]


def test_model_default_load_is_unquantized_in_the_base_dtype():
    from harness.config.model import Quantization
    from harness.model.full import full_quantization
    from harness.model.loading import LoadedBase

    base = LoadedBase(None, None, "tiny:llama-ko", "", Quantization(), "bf16")
    assert full_quantization(base, "none") == Quantization(mode="none", compute_dtype="bf16")
    assert full_quantization(base, "base") == base.quantization


def test_model_name_clashing_with_an_adapter_is_refused(eval_adapter, export, tmp_path):
    code, _out, err = _eval("--adapter", f"x={eval_adapter}", "--model", f"x={export}", "--out", tmp_path)
    assert code == 2 and "--model x=" in err and len(err.strip().splitlines()) == 1, err
