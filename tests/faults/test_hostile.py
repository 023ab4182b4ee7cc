"""Model outputs and dataset text are hostile: empty, huge, odd Unicode (U+2028, U+2029, U+0085, NUL,
lone surrogates through JSON escapes, bidi overrides), HTML. Every path scores, stores, resumes and
renders them; names and labels reach file names and Markdown only made safe; NaN from a broken
adapter reaches the report as nan; chat survives what goes wrong mid-conversation."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from fault_helpers import ADAPTER, EVAL_ARGS, SUITES, assert_ok, read_records

CONTEXTS = [
    "줄\u2028바꿈이 아닌 문자와 문단\u2029구분자, 그리고 다음 줄\u0085표시가 있다.",
    "NUL \x00 바이트와 오른쪽에서 왼쪽 \u202e덮어쓰기 문자가 있다.",
    "<script>alert('x')</script> <img src=x onerror=alert(1)> [링크](javascript:alert(1)) | 표 |",
    "외톨이 서러게이트 \ud800 와 \udfff 가 JSON 이스케이프로 들어 있다.",
    "아주 긴 문맥 " + "가나다라마바사 " * 150,
    "",
]


def _hostile_jsonl(path: Path) -> Path:
    rows = [
        {"id": f"h{i}", "context": c, "question": f"질문 {i}\u2028?", "answers": [a], "answer": a}
        for i, (c, a) in enumerate(zip(CONTEXTS, ["\u2028", "\x00", "<b>굵게</b>", "\ud800", "", "x"]))
    ]
    # ensure_ascii: lone surrogates can only travel as escapes; the file itself is valid UTF-8 JSONL
    path.write_text("".join(json.dumps(r, ensure_ascii=True) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def hostile_run(workdir, fault_adapter, run_cli):
    data = _hostile_jsonl(workdir / "hostile.jsonl")
    argv = [
        "eval",
        str(SUITES / "korquad_sample.yaml"),
        "--data",
        data,
        "--adapter",
        f"{ADAPTER}={fault_adapter}",
        "--run-id",
        "h",
        "--set",
        "generation.max_new_tokens=4",
        "--set",
        "bootstrap.resamples=50",
    ]
    code, _out, err = run_cli(argv)
    assert_ok(code, err)
    return argv, workdir / "runs" / "h"


def test_hostile_dataset_text_is_scored_stored_and_resumed(hostile_run, run_cli):
    argv, run = hostile_run
    for model in ("base", ADAPTER):
        records = read_records(run / "records" / f"{model}.jsonl")
        assert [r["id"] for r in records] == [f"h{i}" for i in range(len(CONTEXTS))]
        assert "\u2028" in records[0]["prompt"] and "\ufffd" in records[3]["prompt"]  # a lone surrogate is no text
    code, _out, err = run_cli(argv)  # every record is reused: U+2028 no longer splits a record in two
    assert_ok(code, err)
    results = json.loads((run / "results.json").read_text(encoding="utf-8"))
    assert all(t["reused"] == len(CONTEXTS) and t["samples"] == 0 for t in results["throughput"].values())


@pytest.mark.parametrize("command", ["report-html", "report-md", "rescore"])
def test_hostile_dataset_text_renders_escaped(command, hostile_run, run_cli, workdir):
    _argv, run = hostile_run
    if command == "rescore":
        code, _out, err = run_cli(["rescore", run])
        assert_ok(code, err)
        return
    out = workdir / ("r.html" if command == "report-html" else "r.md")
    code, _out, err = run_cli(["report", run, *(["-o", out] if command == "report-html" else ["--md", out])])
    assert_ok(code, err)
    text = out.read_text(encoding="utf-8")
    assert "<script>alert" not in text and "<img src=x" not in text and "<b>굵게" not in text
    if command == "report-html":  # the sample data carries the text, escaped, and parses back whole
        data = json.loads(re.search(r'<script type="application/json" id="data">(.*?)</script>', text, re.S).group(1))
        assert any("\ufffd" in s for s in data["strings"]) and any("\u2028" in s for s in data["strings"])


def test_train_on_hostile_text(workdir, run_cli):
    data = _hostile_jsonl(workdir / "hostile.jsonl")
    code, _out, err = run_cli(
        [
            "train",
            "--data",
            data,
            "--set",
            "training.max_steps=1",
            "--output-dir",
            "out",
            "--set",
            "data.validation_fraction=0",
        ]
    )
    assert_ok(code, err)
    assert (workdir / "out" / "adapter_model.safetensors").is_file()


def test_valid_jsonl_with_line_separators_is_read_whole(workdir):
    from harness.data.readers import load_dataset

    path = _hostile_jsonl(workdir / "d.jsonl")
    assert len(load_dataset(str(path), "jsonl").examples) == len(CONTEXTS)


def test_generate_prompts_with_line_separators(workdir, run_cli):
    (workdir / "p.txt").write_text("첫째\u2028같은 줄\n둘째\u0085같은 줄\n", encoding="utf-8")
    code, _out, err = run_cli(
        [
            "generate",
            "--base",
            "tiny:llama-ko",
            "--prompts",
            "p.txt",
            "--max-new-tokens",
            "2",
            "--out",
            "o.jsonl",
            "--quiet",
        ]
    )
    assert_ok(code, err)
    assert [r["prompt"] for r in read_records(workdir / "o.jsonl")] == ["첫째\u2028같은 줄", "둘째\u0085같은 줄"]


# --- a generation grid whose labels are not file names -------------------------------------------------


def test_grid_label_with_a_slash_is_a_safe_file_name(workdir, run_cli):
    argv = [
        "eval",
        str(SUITES / "korquad_sample.yaml"),
        "--run-id",
        "g",
        *EVAL_ARGS,
        "--set",
        'generation_grid={stop: [["</s>"], ["\\n", "../x"]]}',
    ]
    code, _out, err = run_cli(argv)
    assert_ok(code, err)
    run = workdir / "runs" / "g"
    results = json.loads((run / "results.json").read_text(encoding="utf-8"))
    assert list(results["metrics"]) == ['base@stop=["</s>"]', 'base@stop=["\\n", "../x"]']
    files = sorted(p.name for p in (run / "records").iterdir())
    assert len(files) == 2 and all("/" not in f and not f.startswith(".") for f in files)
    assert not (workdir / "runs" / "x").exists()
    code, _out, err = run_cli(argv)
    assert_ok(code, err)
    results = json.loads((run / "results.json").read_text(encoding="utf-8"))
    assert all(t["reused"] == 4 for t in results["throughput"].values())
    code, _out, err = run_cli(["report", run, "--md", "g.md", "-o", "g.html"])
    assert_ok(code, err)
    assert '@stop=\\["&lt;/s&gt;"\\]' in (workdir / "g.md").read_text(encoding="utf-8")


# --- names in Markdown -------------------------------------------------------------------------------

HOSTILE_NAMES = ["<img src=x onerror=alert(1)>", "[click](javascript:alert(1))", "`code` **bold**", "a|b"]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_markdown_escapes_names(name, run_copy, run_cli, workdir):
    results = json.loads((run_copy / "results.json").read_text(encoding="utf-8"))
    for key in ("metrics", "deltas", "throughput"):
        results[key][name] = results[key].pop(ADAPTER)
    for model in results["models"]:
        if model["name"] == ADAPTER:
            model["name"], model["path"] = name, f"adapters/{name}"
    (run_copy / "results.json").write_text(json.dumps(results), encoding="utf-8")
    (run_copy / "records" / f"{ADAPTER}.jsonl").rename(run_copy / "records" / f"{name}.jsonl")
    code, _out, err = run_cli(["report", run_copy, "--md", "r.md", "-o", "r.html"])
    assert_ok(code, err)
    md = (workdir / "r.md").read_text(encoding="utf-8")
    assert "<img" not in md and "](javascript" not in md and "`code`" not in md and "**bold**" not in md
    assert "| a|b" not in md
    assert "<img" not in (workdir / "r.html").read_text(encoding="utf-8")


# --- NaN from a broken adapter -------------------------------------------------------------------------


def test_nan_perplexity_reports_as_nan(nan_adapter, workdir, run_cli):
    code, out, err = run_cli(
        [
            "eval",
            str(SUITES / "perplexity_ko.yaml"),
            "--adapter",
            f"broken={nan_adapter}",
            "--limit",
            "2",
            "--run-id",
            "p",
            "--set",
            "bootstrap.resamples=50",
        ]
    )
    assert_ok(code, err)
    assert "nan" in out
    code, out, err = run_cli(["report", workdir / "runs" / "p", "--md", "p.md", "-o", "p.html"])
    assert_ok(code, err)
    assert "nan" in out and "nan" in (workdir / "p.md").read_text(encoding="utf-8")
    html = (workdir / "p.html").read_text(encoding="utf-8")
    assert ">nan <" in html and '"nan"' in html
    code, out, err = run_cli(["rescore", workdir / "runs" / "p"])
    assert_ok(code, err)


# --- chat keeps the conversation -----------------------------------------------------------------------


def test_chat_keeps_the_conversation_through_errors(nan_adapter, fault_adapter, workdir):
    from harness.config import GenerationSettings, Quantization
    from harness.generate.chat import ChatSession
    from harness.model.adapters import attach_adapters
    from harness.model.loading import load_base
    from harness.runtime.env import detect

    models = attach_adapters(
        load_base("tiny:llama-ko", Quantization(), detect()), {"ok": str(fault_adapter), "broken": str(nan_adapter)}
    )
    lines = [
        b"first question",
        b"\xff\xfe not UTF-8",
        b"/set seed 100000000000000000000000",
        b"/set do_sample true",
        b"/set temperature 1e-30",
        b"/model broken",
        b"this answer samples from NaN",
        b"/model ok",
        b"second question",
        b"/save chat.json",
        b"",
    ]
    stdin = io.TextIOWrapper(io.BytesIO(b"\n".join(lines)), encoding="utf-8")
    out = io.StringIO()
    session = ChatSession(models, ["ok", "broken"], GenerationSettings(max_new_tokens=3), stdin=stdin, stdout=out)
    assert session.run() == 0
    text = out.getvalue()
    assert "not UTF-8" in text and "field 'seed'" in text and "temperature" in text
    assert "the conversation is kept" in text and "Traceback" not in text and text.rstrip().endswith("bye")
    saved = json.loads((workdir / "chat.json").read_text(encoding="utf-8"))
    assert [m["content"] for m in saved["messages"] if m["role"] == "user"] == ["first question", "second question"]


@pytest.mark.parametrize(
    "label",
    [
        "base",
        'base@stop=["</s>"]',
        "a" * 300,
        ".hidden",
        "x\ud800y",
        "tab\there",
        "back\\slash",
        "base@repetition_penalty=1.15",
    ],
)
def test_column_labels_become_safe_distinct_file_names(label, tmp_path):
    from harness.runs.store import RunDir, safe_file_stem

    stem = safe_file_stem(label)
    assert "/" not in stem and "\\" not in stem and not stem.startswith(".") and len(stem.encode()) <= 200
    assert stem == label or stem != safe_file_stem(label + "x")
    run = RunDir(tmp_path / "r").create()
    append, close = run.appender(label)
    append({"key": "k", "id": "1"})
    close()
    assert set(run.load_records(label)) == {"k"} and run.records_file(label).parent == run.records_dir
