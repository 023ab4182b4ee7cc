"""Issue #27, point 7: a prompt longer than the model's context no longer stops a run.

On the real KorQuAD 1.0 dev set (read by path, skipped when absent) the tiny model's 2,048-token
context is too short for its longest passages. `prompt.overflow` decides: truncate (default) cuts
the passage from the left and keeps the instruction and the question, skip leaves the sample out,
error stops before any work. Checked directly with the tokenizer, not with harness's own counts.
"""

from __future__ import annotations

import json

import pytest
from eval_helpers import read_records, read_results
from test_eval_korquad_dev import korquad_dev

from harness.errors import ConfigError

CONTEXT = 2048  # tiny:llama-ko's max_position_embeddings
NEW_TOKENS = 8


def _long_and_short(path, n_long=2):
    """The longest real passages (over the tiny tokenizer's context) and one short one, as KorQuAD JSON."""
    data = json.loads(path.read_text(encoding="utf-8"))
    paragraphs = [p for article in data["data"] for p in article["paragraphs"] if p["qas"]]
    paragraphs.sort(key=lambda p: len(p["context"]))
    chosen = paragraphs[-n_long:] + paragraphs[:1]
    return {
        "version": "KorQuAD_v1.0_dev",
        "data": [{"title": "long", "paragraphs": [{"context": p["context"], "qas": p["qas"][:1]} for p in chosen]}],
    }


@pytest.fixture(scope="module")
def dev_subset(tmp_path_factory):
    path = korquad_dev()
    if path is None:
        pytest.skip("KorQuAD 1.0 dev not found: set KORQUAD_DEV or place it under ../shared/data/korquad")
    out = tmp_path_factory.mktemp("korquad-long") / "long.json"
    out.write_text(json.dumps(_long_and_short(path), ensure_ascii=False), encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def tokenizer(tiny_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_path)


def _requests(suite_config, dev_subset, tokenizer, **overrides):
    from harness.data.readers import load_dataset
    from harness.tasks import get_task

    suite, _ = suite_config("korquad.yaml", {"generation.max_new_tokens": NEW_TOKENS, **overrides})
    examples = load_dataset(str(dev_subset), "korquad", "validation", {}, None, 0).examples
    return examples, get_task("qa").build_requests(suite, examples, tokenizer, [], CONTEXT)


def test_truncate_cuts_the_passage_from_the_left_and_keeps_the_question(suite_config, dev_subset, tokenizer):
    examples, requests = _requests(suite_config, dev_subset, tokenizer)
    n_tokens = lambda text: len(tokenizer(text, add_special_tokens=True)["input_ids"])  # noqa: E731
    long = 0
    for example, request in zip(examples, requests):
        full = f"### 문맥:\n{example['context']}\n\n### 질문:\n{example['question']}\n\n### 답변:\n"
        assert n_tokens(request.prompt) <= CONTEXT - NEW_TOKENS
        if n_tokens(full) <= CONTEXT - NEW_TOKENS:
            assert request.prompt == full and request.extra["truncated_tokens"] == 0
            continue
        long += 1
        kept = example["context"][request.extra["truncated_chars"] :]
        # The instruction, the question and the passage's end are intact; only its start is gone.
        assert request.prompt == f"### 문맥:\n{kept}\n\n### 질문:\n{example['question']}\n\n### 답변:\n"
        assert request.extra["truncated_tokens"] == n_tokens(full) - n_tokens(request.prompt)
        # Cut no more than needed (a token or two of slack where tokens merge across the cut).
        assert (
            n_tokens(full) - (CONTEXT - NEW_TOKENS)
            <= request.extra["truncated_tokens"]
            <= n_tokens(full) - (CONTEXT - NEW_TOKENS) + 2
        )
    assert long == 2


def test_skip_and_error(suite_config, dev_subset, tokenizer):
    _, requests = _requests(suite_config, dev_subset, tokenizer, **{"prompt.overflow": "skip"})
    assert [bool(r.extra.get("skipped")) for r in requests] == [True, True, False]
    with pytest.raises(ConfigError, match=r"dataset example '.*': the prompt has \d+ tokens.*prompt.overflow"):
        _requests(suite_config, dev_subset, tokenizer, **{"prompt.overflow": "error"})


@pytest.mark.slow
def test_eval_on_long_passages_runs_and_counts(suite_config, eval_run, dev_subset, tmp_path):
    overrides = {"dataset.path": str(dev_subset), "generation.max_new_tokens": NEW_TOKENS, "batch_size": 1}
    result = eval_run(suite_config("korquad.yaml", overrides), tmp_path, "long")
    records = read_records(result.run_dir, "base")
    assert [r["truncated_tokens"] > 0 for r in records] == [True, True, False]
    assert all(r["truncated_chars"] > 0 for r in records[:2])
    results = read_results(result.run_dir)
    assert results["long_prompts"]["truncated"] == 2 and results["long_prompts"]["skipped"] == 0
    assert results["n_samples"] == 3
    from harness.runs.summary import results_table

    assert "3 samples (2 prompts truncated to fit the context, 0 skipped)" in results_table(results)
    from harness.report import load_report, render_html, render_markdown

    report = load_report([result.run_dir])
    assert "2 prompts truncated to fit the context, 0 skipped" in render_markdown(report)
    assert "2 prompts truncated to fit the context, 0 skipped" in render_html(report)

    skipped = eval_run(suite_config("korquad.yaml", {**overrides, "prompt.overflow": "skip"}), tmp_path, "skip")
    results = read_results(skipped.run_dir)
    assert results["n_samples"] == 1 and results["long_prompts"]["skipped"] == 2
    assert len(read_records(skipped.run_dir, "base")) == 1
    assert "1 samples (0 prompts truncated to fit the context, 2 skipped)" in results_table(results)
