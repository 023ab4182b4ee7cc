"""What a finished run directory holds: results.json (metrics with intervals, paired deltas,
dataset and adapter hashes, throughput, metric info), one record per sample and model,
config.json and environment.json; summarization labels name their tokenizer; perplexity is the
exact summed NLL of every token, checked against a plain forward pass by hand."""

from __future__ import annotations

import hashlib
import json
import math

import pytest
from eval_helpers import ADAPTER_NAME, REPO_ROOT, SUITES, read_records, read_results

pytestmark = pytest.mark.slow

RECORD_FIELDS = {
    "id",
    "prompt",
    "references",
    "output",
    "prediction",
    "metrics",
    "prompt_tokens",
    "generated_tokens",
    "stop_reason",
    "repetition",
    "key",
}


def sha256_of(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_results_json_structure(qa_run, eval_adapter):
    results = read_results(qa_run.run_dir)
    assert results == json.loads(json.dumps(qa_run.results))  # what run_eval returned is what it wrote
    assert results["task"] == "qa" and results["suite"] == "korquad-sample" and results["n_samples"] == 12
    assert results["run_id"] == "qa"

    for model in ("base", ADAPTER_NAME):
        assert set(results["metrics"][model]) == {"exact_match", "f1"}
        for label, entry in results["metrics"][model].items():
            assert {"value", "low", "high"} <= set(entry), (model, label, entry)
            assert entry["low"] <= entry["value"] <= entry["high"]
            assert entry["n"] == 12
    assert set(results["deltas"]) == {ADAPTER_NAME}
    for label, delta in results["deltas"][ADAPTER_NAME].items():
        assert {"value", "low", "high", "excludes_zero", "improved", "regressed"} <= set(delta)
        assert isinstance(delta["excludes_zero"], bool)
        assert delta["excludes_zero"] == (delta["low"] > 0 or delta["high"] < 0)
        expected = results["metrics"][ADAPTER_NAME][label]["value"] - results["metrics"]["base"][label]["value"]
        assert delta["value"] == pytest.approx(expected, abs=1e-9)

    assert results["dataset"]["sha256"] == sha256_of(REPO_ROOT / "harness" / "data" / "assets" / "korquad_sample.json")
    assert results["dataset"]["examples"] == 12
    base_info, adapter_info = results["models"]
    assert base_info["name"] == "base" and base_info["ref"] == "tiny:llama-ko"
    assert base_info["quantization"]["mode"] == "nf4" and base_info["compute_dtype"] == "fp32"
    assert adapter_info["name"] == ADAPTER_NAME and adapter_info["kind"] == "adapter"
    assert adapter_info["sha256"] == sha256_of(eval_adapter / "adapter_model.safetensors")
    assert adapter_info["train_record"]["base_model"] == "tiny:llama-ko"

    for model in ("base", ADAPTER_NAME):
        t = results["throughput"][model]
        assert t["samples"] == 12 and t["reused"] == 0 and t["wall_s"] > 0 and t["samples_per_s"] > 0
    assert results["metric_info"]["f1"] == {
        "higher_is_better": True,
        "version": results["metric_info"]["f1"]["version"],
        "kind": "per_sample",
    }
    assert results["generation"]["max_new_tokens"] == 12
    assert results["bootstrap"]["resamples"] == 1000

    config = json.loads((qa_run.run_dir / "config.json").read_text(encoding="utf-8"))
    assert config["suite"]["dataset"]["limit"] == 12 and config["suite"]["batch_size"] == 8
    assert config["dataset"]["sha256"] == results["dataset"]["sha256"]
    environment = json.loads((qa_run.run_dir / "environment.json").read_text(encoding="utf-8"))
    assert environment["device"] == "cpu" and "torch" in environment["versions"]


def test_records_hold_every_field(qa_run, tiny_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_path)
    results = read_results(qa_run.run_dir)
    for model in ("base", ADAPTER_NAME):
        records = read_records(qa_run.run_dir, model)
        assert len(records) == 12 and len({r["id"] for r in records}) == 12
        for r in records:
            assert set(r) >= RECORD_FIELDS, set(RECORD_FIELDS - set(r))
            assert r["prompt"].startswith("### 문맥:\n") and r["prompt"].endswith("### 답변:\n")
            assert r["references"] and all(isinstance(a, str) for a in r["references"])
            assert r["prediction"] == r["output"].strip().split("\n", 1)[0].strip()
            assert "\n" not in r["output"]  # cut at the suite's stop string
            assert r["prompt_tokens"] == len(tokenizer(r["prompt"])["input_ids"])
            assert 0 <= r["generated_tokens"] <= 12
            assert r["stop_reason"] in {"stop", "eos", "length"}
            if r["stop_reason"] == "length":
                assert r["generated_tokens"] == 12
            assert set(r["metrics"]) == {"exact_match", "f1"}
            assert isinstance(r["repetition"], dict) and r["repetition"]
        # Per-sample metrics average to the reported value.
        for label in ("exact_match", "f1"):
            mean = sum(r["metrics"][label] for r in records) / len(records)
            assert results["metrics"][model][label]["value"] == pytest.approx(mean, abs=1e-6)


def test_summarization_labels_name_the_tokenizer(suite_config, eval_run, tmp_path):
    suite = suite_config("summarization_ko.yaml", {"dataset.limit": 3, "generation.max_new_tokens": 8, "batch_size": 3})
    results = eval_run(suite, tmp_path, "sum").results
    labels = set(results["metrics"]["base"])
    assert {"rouge1[mecab]", "rouge2[mecab]", "rougeL[mecab]", "rougeLsum[mecab]", "bleu[mecab]", "chrf"} == labels
    assert "mecab" in results["metric_info"]["rouge1[mecab]"]["version"]
    assert results["metric_info"]["bleu[mecab]"]["kind"] == "corpus"
    records = read_records(tmp_path / "sum", "base")
    assert all(
        set(r["metrics"]) == {"rouge1[mecab]", "rouge2[mecab]", "rougeL[mecab]", "rougeLsum[mecab]"} for r in records
    )


@pytest.fixture(scope="module")
def tiny_base(harness_cache):
    from harness.config.model import Quantization
    from harness.model.loading import load_base
    from harness.runtime.env import detect

    return load_base("tiny:llama-ko", Quantization(), detect())


def full_forward_nll(base, text: str) -> tuple[float, int]:
    import torch

    # The tiny tokenizer has a BOS token but does not add it: perplexity starts each document with it.
    ids = [base.tokenizer.bos_token_id, *base.tokenizer(text, add_special_tokens=False)["input_ids"]]
    with torch.inference_mode():
        logits = base.model(input_ids=torch.tensor([ids])).logits[0].float()
    nll = torch.nn.functional.cross_entropy(logits[:-1], torch.tensor(ids[1:]), reduction="sum")
    return float(nll), len(ids)


def test_perplexity_matches_a_full_context_forward_by_hand(suite_config, eval_run, tmp_path, tiny_base):
    suite = suite_config(
        "perplexity_ko.yaml", {"dataset.limit": 2, "perplexity.context_length": 2048, "perplexity.stride": 1024}
    )
    results = eval_run(suite, tmp_path, "ppl").results
    records = read_records(tmp_path / "ppl", "base")
    assert len(records) == 2
    for r in records:
        nll, n_ids = full_forward_nll(tiny_base, r["prompt"])
        assert n_ids <= 2048
        assert r["tokens"] == n_ids - 1
        assert r["bytes"] == len(r["prompt"].encode("utf-8"))
        assert r["nll"] == pytest.approx(nll, rel=1e-5)
    nll_sum, tokens = sum(r["nll"] for r in records), sum(r["tokens"] for r in records)
    metrics = results["metrics"]["base"]
    assert metrics["perplexity"]["value"] == pytest.approx(math.exp(nll_sum / tokens), rel=1e-9)
    assert metrics["bits_per_byte"]["value"] == pytest.approx(
        nll_sum / math.log(2) / sum(r["bytes"] for r in records), rel=1e-9
    )
    assert results["metric_info"]["perplexity"]["higher_is_better"] is False


def test_sliding_window_scores_every_token_exactly_once(suite_config, eval_run, tmp_path, tiny_base):
    suite = suite_config(
        "perplexity_ko.yaml", {"dataset.limit": 3, "perplexity.context_length": 32, "perplexity.stride": 16}
    )
    eval_run(suite, tmp_path, "sliding")
    for r in read_records(tmp_path / "sliding", "base"):
        n_ids = len(tiny_base.tokenizer(r["prompt"], add_special_tokens=True)["input_ids"])
        assert n_ids > 64  # several windows
        assert r["tokens"] == n_ids  # every token of the text, the first one predicted from BOS
        assert math.isfinite(r["nll"]) and r["nll"] > 0


def test_sliding_window_without_overlap_is_refused(suite_config, run_cli):
    """stride == context_length would silently skip the first token of every later window."""
    code, _, err = run_cli(
        [
            "eval",
            SUITES / "perplexity_ko.yaml",
            "--limit",
            "1",
            "--set",
            "perplexity.context_length=32",
            "--set",
            "perplexity.stride=32",
        ]
    )
    assert code == 2
    assert "perplexity.stride" in err and "context_length" in err


def test_samples_with_identical_content_keep_their_own_ids(suite_config, eval_run, tmp_path):
    """Two questions with the same context, question and answers but different ids (KorQuAD dev
    has such pairs) each get their own record."""
    data = tmp_path / "dup.jsonl"
    example = {"context": "서울은 한국의 수도이다.", "question": "한국의 수도는?", "answers": ["서울"]}
    data.write_text(
        "\n".join(json.dumps({"id": i, **example}, ensure_ascii=False) for i in ("q1", "q2", "q3")) + "\n",
        encoding="utf-8",
    )
    suite = suite_config("korquad_sample.yaml", {"dataset.path": str(data), "generation.max_new_tokens": 4})
    eval_run(suite, tmp_path / "runs", "dup")
    assert [r["id"] for r in read_records(tmp_path / "runs" / "dup", "base")] == ["q1", "q2", "q3"]
    # ...and a second run reuses all three.
    again = eval_run(suite, tmp_path / "runs", "dup").results
    assert again["throughput"]["base"]["reused"] == 3


def test_json_flag_prints_only_json_on_stdout(run_cli, tmp_path):
    code, out, err = run_cli(
        [
            "eval",
            SUITES / "korquad_sample.yaml",
            "--limit",
            "2",
            "--set",
            "generation.max_new_tokens=4",
            "--out",
            tmp_path,
            "--run-id",
            "j",
            "--json",
        ]
    )
    assert code == 0, err
    results = json.loads(out)
    assert results["run_id"] == "j" and results["n_samples"] == 2
    assert "harness eval: korquad-sample" in err  # the start line moved to stderr
