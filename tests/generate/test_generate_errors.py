"""Errors of `harness generate`: one line naming the prompt or field and the fix, exit 2, and
records already in --out stay."""

from __future__ import annotations

import json

import pytest

TINY = "tiny:llama-ko"


@pytest.mark.parametrize(
    "args, expected",
    [
        (
            ["--compare", "repetiton_penalty=1.0,1.2"],
            ["'repetiton_penalty' is not a generation field", "did you mean 'repetition_penalty'?", "valid fields:"],
        ),
        (["--compare", "beam=1,2"], ["--compare beam=1,2", "valid fields: max_new_tokens"]),
        (["--compare", "temperature=1.0,0"], ["field 'temperature'", "greater than 0"]),
        (["--compare", "temperature"], ["expected FIELD=V1,V2"]),
        (["--temperature", "0"], ["field 'temperature'", "greater than 0"]),
        (["--top-p", "1.5"], ["field 'top_p'", "less than or equal to 1"]),
        (["--max-new-tokens", "many"], ["field 'max_new_tokens'", "valid integer"]),
        (["--min-new-tokens", "9", "--max-new-tokens", "4"], ["min_new_tokens (9) exceeds max_new_tokens (4)"]),
    ],
)
def test_bad_generation_options(gen_error, args, expected):
    gen_error(["--base", TINY, "--prompt", "안녕", *args], *expected)


def test_unreadable_and_bad_prompt_files(gen_error, workdir):
    gen_error(["--base", TINY, "--prompts", "missing.txt"], "--prompts missing.txt", "cannot read", "check the path")
    (workdir / "bad.jsonl").write_text('{"prompt": "ok"}\nnot json\n', encoding="utf-8")
    gen_error(["--base", TINY, "--prompts", "bad.jsonl"], "bad.jsonl line 2", "invalid JSON")
    (workdir / "nofield.jsonl").write_text('{"question": "수도는?"}\n', encoding="utf-8")
    gen_error(["--base", TINY, "--prompts", "nofield.jsonl"], "no 'prompt' field", "--template")
    gen_error(["--base", TINY], "no prompts", "--prompt TEXT")
    gen_error(["--base", TINY, "--generation", "nope.yaml", "--prompt", "x"], "--generation nope.yaml", "cannot read")


def test_prompt_longer_than_context_keeps_written_records(gen_error, workdir):
    out = workdir / "out.jsonl"
    earlier = json.dumps({"prompt_id": "earlier", "output": "kept"}) + "\n"
    out.write_text(earlier, encoding="utf-8")
    line = gen_error(
        ["--base", TINY, "--prompt", "짧은 질문", "--prompt", "가나다 " * 1500, "--out", out],
        "prompt '2' has",
        "exceeds the model's context of 2048",
        "shorten the prompt or lower max_new_tokens",
    )
    assert "prompt '1'" not in line
    assert out.read_text(encoding="utf-8") == earlier


def test_suite_grid_with_unknown_field_is_one_line(gen_error, workdir):
    suite = workdir / "s.yaml"
    suite.write_text("name: s\ntask: qa\ngeneration_grid: {temprature: [0.5, 1.0]}\n", encoding="utf-8")
    gen_error(
        ["--base", TINY, "--suite", suite, "--prompt", "x"],
        "s.yaml",
        "generation_grid",
        "'temprature' is not a generation field",
        "did you mean 'temperature'?",
    )


def test_side_by_side_layout_fits_the_terminal():
    """Wide terminals get one column per model × variant; Hangul counts two columns."""
    from harness.generate.prompts import PromptItem
    from harness.generate.terminal import render_prompt
    from harness.metrics.repetition import repetition_stats
    from harness.runs.tables import display_width

    def record(column, output):
        return {
            "column": column,
            "output": output,
            "generated_tokens": 9,
            "time_s": 0.5,
            "batch_size": 2,
            "tokens_per_s": 18.0,
            "stop_reason": "length",
            "hit_limit": True,
            "repetition": repetition_stats(output).to_dict(),
        }

    records = [record("base", "서울은 대한민국의 수도이다. " * 6), record("tiny@top_k=5", "Seoul is the capital. " * 5)]
    text = render_prompt(PromptItem("1", "한국의 수도는?"), records, width=100, side_by_side=True)
    lines = text.splitlines()
    assert all(display_width(line) <= 100 for line in lines), text
    assert "▸ base" in lines[1] and "▸ tiny@top_k=5" in lines[1]
    assert "hit max_new_tokens" in text
    stacked = render_prompt(PromptItem("1", "한국의 수도는?"), records, width=100)
    assert stacked.index("▸ base") < stacked.index("▸ tiny@top_k=5")
