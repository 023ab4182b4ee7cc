"""`harness merge` on the tiny model: real 4-bit base, real adapters, real peft merges.

- fp32 merge of one adapter equals base + adapter unmerged (1e-5), greedy outputs identical,
  the export loads with AutoModelForCausalLM alone and scores like base + adapter in harness eval;
- --dequantize matches the 4-bit base + adapter (the evaluated model);
- a two-adapter linear merge equals peft's weighted adapter applied unmerged;
- each user error gives one line and exit 2; a failed merge leaves no export behind.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "eval"))

from eval_helpers import quiet, train_adapter

pytestmark = pytest.mark.slow
PROMPT = "### 문맥:\n은솔마을은 1962년에 생겼다.\n\n### 질문:\n은솔마을은 언제 생겼는가?\n\n### 답변:\n"


@pytest.fixture(scope="module")
def adapters(tmp_path_factory, harness_cache) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("merge-adapters")
    first, second = root / "first", root / "second"
    train_adapter(first, **{"training.max_steps": 12})
    train_adapter(second, **{"training.max_steps": 12, "training.seed": 7, "data.seed": 3})
    return first, second


def _merge(**kwargs):
    from harness.merge.run import MergeRequest, merge

    return merge(MergeRequest(**{"base": "tiny:llama-ko", "dtype": "fp32", **kwargs}))


def _logits_and_greedy(model, tokenizer):
    import torch

    ids = tokenizer(PROMPT, return_tensors="pt").input_ids
    with torch.inference_mode():
        logits = model(input_ids=ids).logits[0].float()
        greedy = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            max_new_tokens=12,
            pad_token_id=tokenizer.pad_token_id,
        )[0, ids.shape[1] :].tolist()
    return logits, greedy


def _plain_base():
    from harness.config import Quantization
    from harness.model.loading import load_base
    from harness.runtime.env import detect

    return load_base("tiny:llama-ko", Quantization(mode="none", compute_dtype="fp32"), detect())


def test_fp32_merge_equals_base_plus_adapter(tmp_path, adapters):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "export"
    record = _merge(adapters=[str(adapters[0])], out=str(out))
    assert record["verification"]["passed"]
    assert {
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "generation_config.json",
        "README.md",
        "merge_record.json",
    } <= {p.name for p in out.iterdir()}
    assert "quantization_config" not in json.loads((out / "config.json").read_text())

    export = AutoModelForCausalLM.from_pretrained(out, dtype="float32").eval()
    exported_logits, exported_greedy = _logits_and_greedy(export, AutoTokenizer.from_pretrained(out))
    base = _plain_base()
    unmerged = PeftModel.from_pretrained(base.model, str(adapters[0])).eval()
    logits, greedy = _logits_and_greedy(unmerged, base.tokenizer)
    assert (exported_logits - logits).abs().max().item() < 1e-5
    assert exported_greedy == greedy


def test_export_scores_like_base_plus_adapter_in_eval(tmp_path, adapters):
    from harness.config import SuiteConfig, load_config
    from harness.evaluate.run import run_eval

    out = tmp_path / "export"
    _merge(adapters=[str(adapters[0])], out=str(out))
    suite_file = Path(__file__).resolve().parents[2] / "suites" / "korquad_sample.yaml"
    common = {
        "dataset.limit": 8,
        "generation.max_new_tokens": 8,
        "models.quantization.mode": "none",
        "models.quantization.compute_dtype": "fp32",
        "bootstrap.resamples": 100,
    }
    with_adapter = load_config(SuiteConfig, suite_file, {**common, "models.include_base": False})
    with_adapter.models.adapters = {"adapter": str(adapters[0])}
    exported = load_config(SuiteConfig, suite_file, {**common, "models.base": str(out)})
    a = run_eval(with_adapter, str(suite_file), tmp_path / "runs", "adapter", log=quiet, progress_bars=False)
    b = run_eval(exported, str(suite_file), tmp_path / "runs", "export", log=quiet, progress_bars=False)
    assert a.results["metrics"]["adapter"] == b.results["metrics"]["base"]
    preds_a = [json.loads(line)["prediction"] for line in (a.run_dir / "records" / "adapter.jsonl").open()]
    preds_b = [json.loads(line)["prediction"] for line in (b.run_dir / "records" / "base.jsonl").open()]
    assert preds_a == preds_b


def test_dequantize_matches_the_evaluated_4bit_model(tmp_path, adapters):
    plain = _merge(adapters=[str(adapters[0])], out=str(tmp_path / "plain"))
    faithful = _merge(adapters=[str(adapters[0])], out=str(tmp_path / "faithful"), dequantize=True)
    gap = faithful["verification"]["export_vs_evaluated_4bit"]
    # Stated tolerance: the dequantized export computes the 4-bit model's function up to fp32 rounding.
    assert gap["max_abs_logit_diff"] < 1e-4
    assert gap["greedy_token_agreement"] == 1.0
    assert faithful["verification"]["passed"]
    # Merging into the original weights is a different model; the record says so.
    assert plain["verification"]["export_vs_evaluated_4bit"]["max_abs_logit_diff"] > 100 * gap["max_abs_logit_diff"]
    assert "--dequantize" in plain["verification"]["note"]


def test_two_adapter_linear_merge_equals_weighted_adapter_unmerged(tmp_path, adapters):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = tmp_path / "linear"
    record = _merge(adapters=[str(a) for a in adapters], out=str(out), weights=[0.7, 0.3], method="linear")
    assert record["verification"]["passed"] and record["method"] == "linear"
    export = AutoModelForCausalLM.from_pretrained(out, dtype="float32").eval()
    base = _plain_base()
    model = PeftModel.from_pretrained(base.model, str(adapters[0]), adapter_name="one")
    model.load_adapter(str(adapters[1]), adapter_name="two")
    model.add_weighted_adapter(["one", "two"], [0.7, 0.3], "weighted", combination_type="linear")
    model.set_adapter("weighted")
    expected, greedy = _logits_and_greedy(model.eval(), base.tokenizer)
    got, got_greedy = _logits_and_greedy(export, base.tokenizer)
    assert (got - expected).abs().max().item() < 1e-5
    assert got_greedy == greedy


def test_dry_run_lists_the_upload_without_network(tmp_path, adapters, run_cli):
    code, stdout, stderr = run_cli(
        [
            "merge",
            "--base",
            "tiny:llama-ko",
            "--adapter",
            str(adapters[0]),
            "--out",
            str(tmp_path / "e"),
            "--dtype",
            "fp32",
            "--push-to-hub",
            "me/tiny-ko",
            "--dry-run",
        ]
    )
    assert code == 0, stderr
    assert "would upload" in stdout and "model.safetensors" in stdout and "merge_record.json" in stdout


def _other_base_adapter(tmp_path: Path, source: Path) -> Path:
    other = tmp_path / "other-base"
    shutil.copytree(source, other)
    record = json.loads((other / "train_record.json").read_text())
    record["base_signature"]["hidden_size"] = 4096
    (other / "train_record.json").write_text(json.dumps(record))
    return other


@pytest.mark.parametrize(
    "case",
    [
        "other_base",
        "no_config",
        "unknown_method",
        "weights_mismatch",
        "out_exists",
        "bad_weights",
        "nan_weights",
        "bad_repo_id",
        "dry_run_alone",
        "nan_adapter",
    ],
)
def test_user_errors_give_one_line_and_exit_2(case, tmp_path, adapters, run_cli):
    adapter = str(adapters[0])
    out = tmp_path / "export"
    args = ["merge", "--base", "tiny:llama-ko", "--adapter", adapter, "--out", str(out), "--dtype", "fp32"]
    expected = {
        "other_base": "hidden_size",
        "no_config": "adapter_config.json",
        "unknown_method": "--method",
        "weights_mismatch": "--weights",
        "out_exists": "already exists",
        "bad_weights": "--weights",
        "nan_weights": "finite",
        "bad_repo_id": "OWNER/NAME",
        "dry_run_alone": "--dry-run",
        "nan_adapter": "adapter_model.safetensors: tensor",
    }[case]
    if case == "other_base":
        args[4] = str(_other_base_adapter(tmp_path, adapters[0]))
    elif case == "no_config":
        empty = tmp_path / "empty-adapter"
        empty.mkdir()
        args[4] = str(empty)
    elif case == "unknown_method":
        args += ["--adapter", str(adapters[1]), "--method", "average"]
    elif case == "weights_mismatch":
        args += ["--adapter", str(adapters[1]), "--weights", "0.5,0.3,0.2"]
    elif case == "out_exists":
        out.mkdir()
    elif case == "bad_weights":
        args += ["--adapter", str(adapters[1]), "--weights", "half,half"]
    elif case == "nan_weights":  # float() reads "nan": a merge weighted by it verified as passed before
        args += ["--adapter", str(adapters[1]), "--weights", "nan,nan"]
    elif case == "nan_adapter":
        args[4] = str(_diverged_adapter(tmp_path, adapters[0]))
    elif case == "bad_repo_id":
        args += ["--push-to-hub", "not a repo"]
    elif case == "dry_run_alone":
        args += ["--dry-run"]
    code, _, stderr = run_cli(args)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("harness merge: error:"), stderr
    assert expected in lines[0]
    if case != "out_exists":
        assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".export-")]  # no half-written export


def _diverged_adapter(tmp_path: Path, adapter: Path) -> Path:
    """A copy of `adapter` whose LoRA weights went NaN, as a diverged training leaves them."""
    from safetensors.torch import load_file, save_file

    diverged = tmp_path / "diverged"
    shutil.copytree(adapter, diverged)
    weights = load_file(str(diverged / "adapter_model.safetensors"))
    save_file({k: v.fill_(float("nan")) for k, v in weights.items()}, str(diverged / "adapter_model.safetensors"))
    return diverged


def test_a_failed_verification_leaves_the_previous_export_in_place(tmp_path, adapters, run_cli):
    out = tmp_path / "e"
    base = ["merge", "--base", "tiny:llama-ko", "--adapter", str(adapters[0]), "--out", str(out), "--dtype", "fp32"]
    assert run_cli(base)[0] == 0
    good = (out / "merge_record.json").read_text(encoding="utf-8")
    code, stdout, _ = run_cli(base + ["--overwrite", "--adapter", str(adapters[1]), "--quantization-tolerance", "1e-9"])
    assert code == 1 and "was left as it was" in stdout
    assert (out / "merge_record.json").read_text(encoding="utf-8") == good
    failed = json.loads((tmp_path / "e.failed" / "merge_record.json").read_text(encoding="utf-8"))
    assert not failed["verification"]["passed"] and len(failed["adapters"]) == 2


def test_verification_failure_exits_1_and_names_the_gap(tmp_path, adapters, run_cli):
    code, stdout, _ = run_cli(
        [
            "merge",
            "--base",
            "tiny:llama-ko",
            "--adapter",
            str(adapters[0]),
            "--out",
            str(tmp_path / "e"),
            "--dtype",
            "fp32",
            "--quantization-tolerance",
            "1e-9",
        ]
    )
    assert code == 1
    assert "quantization gap" in stdout and "--dequantize" in stdout
