"""Every command's every input, given the wrong thing: malformed, wrong-typed, not UTF-8, empty, huge,
hostile. In-process (`run_cli`); each case fails before a model would load, or is cheap enough to run.

A case is (argv, {file: content}, needles): exit 2 with one line holding every needle.
`{ADAPTER}` and `{TRUNCATED}` in argv stand for the session's adapter and a copy of it with its weights
cut short.
"""

from __future__ import annotations

import json

import pytest
from fault_helpers import SUITES, assert_one_line_error

SUITE = str(SUITES / "korquad_sample.yaml")
ROW = {"context": "서울은 한국의 수도이다.", "question": "한국의 수도는?", "answer": "서울", "answers": ["서울"]}


def squad(qa: dict | None = None, paragraph: dict | None = None, article: dict | None = None) -> str:
    qa = {"id": "1", "question": "q", "answers": [{"text": "a", "answer_start": 0}], **(qa or {})}
    paragraph = {"context": "c", "qas": [qa], **(paragraph or {})}
    return json.dumps({"data": [{"title": "t", "paragraphs": [paragraph], **(article or {})}]})


def jsonl(*rows) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


NOT_UTF8 = b"name: \xff\xfe\xfd\n"
DEEP_JSON = "[" * 100_000 + "]" * 100_000

# A base that needs its own Python code to load: never run (the code would end the test if it were).
REMOTE_CODE = {
    "rc/config.json": json.dumps(
        {
            "model_type": "custom-x",
            "architectures": ["CustomX"],
            "auto_map": {"AutoConfig": "configuration_x.XConfig", "AutoModelForCausalLM": "modeling_x.XModel"},
        }
    ),
    "rc/configuration_x.py": "raise SystemExit('remote code ran')\n",
    "rc/modeling_x.py": "raise SystemExit('remote code ran')\n",
}

# --- harness eval: the suite file and its fields -----------------------------------------------------
EVAL = {
    "suite not UTF-8": (["eval", "s.yaml"], {"s.yaml": NOT_UTF8}, ["s.yaml", "not UTF-8", "UTF-8"]),
    "suite empty": (["eval", "s.yaml"], {"s.yaml": ""}, ["s.yaml", "'name'"]),
    "suite a list": (["eval", "s.yaml"], {"s.yaml": "- a\n- b\n"}, ["s.yaml", "mapping"]),
    "suite malformed": (["eval", "s.yaml"], {"s.yaml": "name: [x\n"}, ["s.yaml", "line"]),
    "suite nested too deep": (["eval", "s.yaml"], {"s.yaml": "name: " + "[" * 50_000 + "]" * 50_000}, ["s.yaml"]),
    "suite missing": (["eval", "nope.yaml"], {}, ["nope.yaml", "not found"]),
    "suite is a folder": (["eval", "d"], {"d/x": ""}, ["d", "not found"]),
    "suite unknown task": (["eval", "s.yaml"], {"s.yaml": "name: x\ntask: qa2\n"}, ["s.yaml", "task", "qa2"]),
    "suite unknown field": (["eval", SUITE, "--set", "generaton.max_new_tokens=2"], {}, ["generaton"]),
    "suite name with slash": (["eval", "s.yaml"], {"s.yaml": "name: ../../etc\ntask: qa\n"}, ["s.yaml", "name"]),
    "suite name huge": (["eval", "s.yaml"], {"s.yaml": f"name: {'n' * 300}\ntask: qa\n"}, ["s.yaml", "name"]),
    "suite name control char": (["eval", "s.yaml"], {"s.yaml": 'name: "a\\tb"\ntask: qa\n'}, ["s.yaml", "name"]),
    "adapter named base": (
        ["eval", "s.yaml"],
        {"s.yaml": "name: x\ntask: qa\nmodels:\n  adapters: {base: a}\n"},
        ["s.yaml", "models.adapters", "base"],
    ),
    "adapter name 300 chars": (
        ["eval", "s.yaml"],
        {"s.yaml": f"name: x\ntask: qa\nmodels:\n  adapters: {{{'a' * 300}: a}}\n"},
        ["s.yaml", "models.adapters", "100 characters"],
    ),
    "--adapter name 300 chars": (
        ["eval", SUITE, "--adapter", "a" * 300 + "=x", "--limit", "1"],
        {},
        ["--adapter", "100 characters"],
    ),
    "--limit zero": (["eval", SUITE, "--limit", "0"], {}, ["--limit 0", "positive"]),
    "--limit negative": (["eval", SUITE, "--limit", "-3"], {}, ["--limit -3"]),
    "batch size zero": (["eval", SUITE, "--batch-size", "0"], {}, ["batch_size", "positive"]),
    "dataset seed huge": (
        ["eval", SUITE, "--set", "dataset.seed=100000000000000000000000"],
        {},
        ["dataset.seed", "less than or equal"],
    ),
    "generation seed negative": (["eval", SUITE, "--set", "generation.seed=-1"], {}, ["generation.seed"]),
    "sampling temperature near zero": (
        ["eval", SUITE, "--set", "generation.do_sample=true", "--set", "generation.temperature=1e-30"],
        {},
        ["temperature", "do_sample"],
    ),
    "max_new_tokens zero": (["eval", SUITE, "--set", "generation.max_new_tokens=0"], {}, ["generation.max_new_tokens"]),
    "grid not a list": (["eval", SUITE, "--set", "generation_grid.temperature=0.5"], {}, ["generation_grid"]),
    "grid unknown field": (["eval", SUITE, "--set", "generation_grid.temprature=[0.5]"], {}, ["temprature"]),
    "confidence one": (["eval", SUITE, "--set", "bootstrap.confidence=1"], {}, ["bootstrap.confidence"]),
    "resamples absurd": (["eval", SUITE, "--set", "bootstrap.resamples=100000000000"], {}, ["bootstrap.resamples"]),
    "unknown metric": (
        ["eval", SUITE, "--set", "metrics=[nope]", "--data", "d.jsonl"],
        {"d.jsonl": jsonl(ROW)},
        ["nope"],
    ),
    "bad --set": (["eval", SUITE, "--set", "generation"], {}, ["--set generation", "FIELD=VALUE"]),
    "--data missing": (["eval", SUITE, "--data", "nope.json"], {}, ["nope.json", "not found"]),
    "--base with remote code": (["eval", SUITE, "--base", "rc", "--limit", "1"], REMOTE_CODE, ["rc", "cannot load"]),
}

# --- the dataset, through eval (SQuAD/KorQuAD JSON, JSONL, CSV) --------------------------------------
DATA = {
    "data not UTF-8": (b'{"data": "\xff"}', "d.json", ["d.json", "UTF-8"]),
    "data empty file": ("", "d.json", ["d.json", "malformed JSON"]),
    "data malformed": ('{"data": [', "d.json", ["d.json", "malformed JSON", "line 1"]),
    "data nested too deep": (DEEP_JSON, "d.json", ["d.json", "nested too deeply"]),
    "data top-level list": ("[1, 2]", "d.json", ["d.json", "'data' list"]),
    "data 'data' not a list": ('{"data": 5}', "d.json", ["d.json", "'data' list"]),
    "data article a number": ('{"data": [5]}', "d.json", ["d.json", "data[0]", "got int"]),
    "data paragraphs a number": (squad(article={"paragraphs": 5}), "d.json", ["data[0].paragraphs", "a list"]),
    "data paragraph a string": (squad(article={"paragraphs": ["p"]}), "d.json", ["data[0].paragraphs[0]"]),
    "data context a number": (squad(paragraph={"context": 7}), "d.json", ["paragraphs[0].context", "a string"]),
    "data qas null": (squad(paragraph={"qas": None}), "d.json", ["paragraphs[0].qas", "got null"]),
    "data question missing": (
        squad(qa={"question": None}).replace('"question": null, ', ""),
        "d.json",
        ["qas[0]", "'question'"],
    ),
    "data question a list": (squad(qa={"question": ["q"]}), "d.json", ["qas[0].question", "a string"]),
    "data answers null": (squad(qa={"answers": None}), "d.json", ["qas[0].answers", "got null"]),
    "data answers a number": (squad(qa={"answers": 5}), "d.json", ["qas[0].answers", "got int"]),
    "data answer without text": (
        squad(qa={"answers": [{"answer_start": 0}]}),
        "d.json",
        ["qas[0].answers[0]", "'text'"],
    ),
    "data answer text a number": (squad(qa={"answers": [{"text": 3}]}), "d.json", ["qas[0].answers[0]", "'text'"]),
    "data answer a string": (squad(qa={"answers": ["a"]}), "d.json", ["qas[0].answers[0]", "'text'"]),
    "data no questions": ('{"data": []}', "d.json", ["d.json", "empty"]),
    "jsonl not UTF-8": (b'{"context": "\xff"}\n', "d.jsonl", ["d.jsonl", "UTF-8"]),
    "jsonl blank": ("\n \n", "d.jsonl", ["d.jsonl", "empty"]),
    "jsonl a list per line": ("[1]\n", "d.jsonl", ["d.jsonl line 1", "JSON object"]),
    "jsonl torn line": (jsonl(ROW) + '{"context": "x', "d.jsonl", ["d.jsonl line 2", "invalid JSON"]),
    "jsonl nested too deep": (DEEP_JSON + "\n", "d.jsonl", ["d.jsonl line 1", "nested too deeply"]),
    "jsonl NUL byte outside strings": ('{"context": 1}\x00\n', "d.jsonl", ["d.jsonl line 1"]),
    # The references are checked with the metrics, before any model loads: the first field named.
    "jsonl missing template field": (jsonl({"q": "x"}), "d.jsonl", ["d.jsonl", "'answers'"]),
    "csv missing column": ("a,b\n1,2\n", "d.csv", ["d.csv", "'answers'"]),
    "csv not UTF-8": (b"context,question\n\xff,x\n", "d.csv", ["d.csv", "UTF-8"]),
    "unknown extension": ("x", "d.txt", ["d.txt", "format"]),
}

# --- harness train: config and data ------------------------------------------------------------------
FAST = ["--set", "training.max_steps=1", "--set", "data.limit=2", "--output-dir", "out"]
TRAIN = {
    "train config not UTF-8": (["train", "t.yaml", *FAST], {"t.yaml": NOT_UTF8}, ["t.yaml", "not UTF-8"]),
    "train seed huge": (["train", *FAST, "--set", "training.seed=100000000000000000000000"], {}, ["training.seed"]),
    "train seed negative": (["train", *FAST, "--set", "training.seed=-5"], {}, ["training.seed"]),
    "train data seed huge": (["train", *FAST, "--set", "data.seed=99999999999999999999"], {}, ["data.seed"]),
    "train epochs absurd": (
        ["train", "--set", "training.epochs=1e308", "--output-dir", "out"],
        {},
        ["training.epochs"],
    ),
    "train epochs inf": (["train", "--set", "training.epochs=.inf", "--output-dir", "out"], {}, ["training.epochs"]),
    "train max_steps absurd": (
        ["train", "--set", "training.max_steps=100000000000000000000", "--output-dir", "out"],
        {},
        ["training.max_steps"],
    ),
    "train max_length absurd": (
        ["train", *FAST, "--set", "data.max_length=100000000000000000000"],
        {},
        ["data.max_length"],
    ),
    "train max_length zero": (["train", *FAST, "--set", "data.max_length=0"], {}, ["data.max_length"]),
    "train name with slash": (["train", "--name", "../x", "--set", "training.max_steps=1"], {}, ["name", "'/'"]),
    "train name 300 chars": (["train", "--name", "n" * 300, "--set", "training.max_steps=1"], {}, ["name"]),
    "train lr zero": (["train", *FAST, "--set", "training.learning_rate=0"], {}, ["training.learning_rate"]),
    "train lr a string": (["train", *FAST, "--set", "training.learning_rate=fast"], {}, ["training.learning_rate"]),
    "train dropout one": (["train", *FAST, "--set", "lora.dropout=1"], {}, ["lora.dropout"]),
    "train data answers null": (
        ["train", "--data", "d.json", *FAST],
        {"d.json": squad(qa={"answers": None})},
        ["qas[0].answers"],
    ),
    "train data nested too deep": (
        ["train", "--data", "d.jsonl", *FAST],
        {"d.jsonl": DEEP_JSON + "\n"},
        ["d.jsonl line 1", "nested too deeply"],
    ),
    "train data not UTF-8": (["train", "--data", "d.jsonl", *FAST], {"d.jsonl": b"\xff\n"}, ["d.jsonl", "UTF-8"]),
    "train data empty": (["train", "--data", "d.jsonl", *FAST], {"d.jsonl": ""}, ["d.jsonl", "empty"]),
    "train output is under a file": (
        ["train", "--set", "training.max_steps=1", "--set", "data.limit=2", "--output-dir", "f.txt/out"],
        {"f.txt": "x"},
        ["f.txt"],
    ),
}

# --- harness generate ---------------------------------------------------------------------------------
GEN = ["generate", "--base", "tiny:llama-ko", "--max-new-tokens", "2"]
GENERATE = {
    "prompts not UTF-8": ([*GEN, "--prompts", "p.txt"], {"p.txt": b"\xff\xfe\n"}, ["p.txt", "UTF-8"]),
    "prompts empty": ([*GEN, "--prompts", "p.txt"], {"p.txt": "\n\n"}, ["no prompts"]),
    "prompts missing": ([*GEN, "--prompts", "nope.txt"], {}, ["nope.txt", "cannot read"]),
    "prompts jsonl without prompt": ([*GEN, "--prompts", "p.jsonl"], {"p.jsonl": jsonl({"q": "x"})}, ["'prompt'"]),
    "prompts jsonl a list": ([*GEN, "--prompts", "p.jsonl"], {"p.jsonl": "[1]\n"}, ["p.jsonl line 1"]),
    "prompts jsonl nested too deep": (
        [*GEN, "--prompts", "p.jsonl"],
        {"p.jsonl": DEEP_JSON + "\n"},
        ["p.jsonl line 1", "nested too deeply"],
    ),
    "prompts jsonl duplicate ids": (
        [*GEN, "--prompts", "p.jsonl"],
        {"p.jsonl": jsonl({"id": "a", "prompt": "x"}, {"id": "a", "prompt": "y"})},
        ["'a'", "twice"],
    ),
    "--generation not UTF-8": (
        [*GEN, "--prompt", "x", "--generation", "g.yaml"],
        {"g.yaml": NOT_UTF8},
        ["g.yaml", "UTF-8"],
    ),
    "--generation a list": ([*GEN, "--prompt", "x", "--generation", "g.yaml"], {"g.yaml": "- 1\n"}, ["g.yaml"]),
    "--generation unknown field": (
        [*GEN, "--prompt", "x", "--generation", "g.yaml"],
        {"g.yaml": "temprature: 1\n"},
        ["temprature"],
    ),
    "--seed huge": ([*GEN, "--prompt", "x", "--seed", "100000000000000000000000"], {}, ["seed"]),
    "--temperature near zero sampling": (
        [*GEN, "--prompt", "x", "--do-sample", "--temperature", "1e-30"],
        {},
        ["temperature"],
    ),
    "--temperature not a number": ([*GEN, "--prompt", "x", "--temperature", "hot"], {}, ["temperature", "'hot'"]),
    "--top-p above one": ([*GEN, "--prompt", "x", "--top-p", "1.5"], {}, ["top_p"]),
    "--min above max": ([*GEN, "--prompt", "x", "--min-new-tokens", "5"], {}, ["min_new_tokens"]),
    "--compare bad": ([*GEN, "--prompt", "x", "--compare", "temperature"], {}, ["--compare"]),
    "--compare unknown field": ([*GEN, "--prompt", "x", "--compare", "tmp=1,2"], {}, ["'tmp'"]),
    "--batch-size zero": ([*GEN, "--prompt", "x", "--batch-size", "0"], {}, ["--batch-size"]),
    "two prompt sources": ([*GEN, "--prompt", "x", "--prompts", "p.txt"], {"p.txt": "y\n"}, ["two places"]),
    "no prompt": (GEN, {}, ["no prompts"]),
    "--no-base alone": ([*GEN, "--prompt", "x", "--no-base"], {}, ["--no-base"]),
    "--adapter missing": ([*GEN, "--prompt", "x", "--adapter", "a=nope"], {}, ["nope", "not found"]),
    "--adapter without config": ([*GEN, "--prompt", "x", "--adapter", "a=d"], {"d/x": ""}, ["adapter_config.json"]),
    "--suite not UTF-8": ([*GEN, "--prompt", "x", "--suite", "s.yaml"], {"s.yaml": NOT_UTF8}, ["s.yaml", "UTF-8"]),
    "--base unknown tiny": (["generate", "--base", "tiny:nope", "--prompt", "x"], {}, ["tiny:nope"]),
    "--base missing path": (["generate", "--base", "./nope", "--prompt", "x"], {}, ["./nope", "not found"]),
    "--base with remote code": (["generate", "--base", "rc", "--prompt", "x"], REMOTE_CODE, ["rc", "cannot load"]),
    "--template not UTF-8": (
        [*GEN, "--prompt", "x", "--template", "t.yaml"],
        {"t.yaml": b"prompt: \xff\n"},
        ["t.yaml", "UTF-8"],
    ),
    "--template prompt a number": (
        [*GEN, "--prompt", "x", "--template", "t.yaml"],
        {"t.yaml": "prompt: 5\n"},
        ["t.yaml", "'prompt'", "jinja2 text"],
    ),
    "--template a list": ([*GEN, "--prompt", "x", "--template", "t.yaml"], {"t.yaml": "- a\n"}, ["t.yaml", "'prompt'"]),
    "--prompt empty": ([*GEN, "--prompt", ""], {}, ["prompt '1' is empty"]),
    "prompts jsonl prompt empty": ([*GEN, "--prompts", "p.jsonl"], {"p.jsonl": jsonl({"prompt": ""})}, ["is empty"]),
    "prompts jsonl prompt a number": ([*GEN, "--prompts", "p.jsonl"], {"p.jsonl": jsonl({"prompt": 5})}, ["'prompt'"]),
    "--out under a file": ([*GEN, "--prompt", "x", "--out", "f.txt/o.jsonl"], {"f.txt": "x"}, ["f.txt"]),
}

# --- harness merge: everything it reads is checked before the merge ----------------------------------
MERGE = ["merge", "--base", "tiny:llama-ko", "--out", "exports/m"]
MERGE_CASES = {
    "--weights not numbers": ([*MERGE, "--adapter", "{ADAPTER}", "--weights", "a,b"], {}, ["--weights"]),
    "--weights count": (
        [*MERGE, "--adapter", "{ADAPTER}", "--adapter", "{ADAPTER}", "--weights", "1"],
        {},
        ["--weights", "one weight per adapter"],
    ),
    "--method unknown": (
        [*MERGE, "--adapter", "{ADAPTER}", "--adapter", "{ADAPTER}", "--method", "avg"],
        {},
        ["--method avg"],
    ),
    "--density above one": (
        [*MERGE, "--adapter", "{ADAPTER}", "--adapter", "{ADAPTER}", "--method", "ties", "--density", "2"],
        {},
        ["--density 2"],
    ),
    "--density nan": ([*MERGE, "--adapter", "{ADAPTER}", "--density", "nan"], {}, ["--density nan"]),
    "--tolerance negative": ([*MERGE, "--adapter", "{ADAPTER}", "--tolerance", "-1"], {}, ["--tolerance -1"]),
    "--quantization-tolerance nan": (
        [*MERGE, "--adapter", "{ADAPTER}", "--quantization-tolerance", "nan"],
        {},
        ["--quantization-tolerance nan"],
    ),
    "--dtype unknown": ([*MERGE, "--adapter", "{ADAPTER}", "--dtype", "fp8"], {}, ["--dtype fp8"]),
    "--probes not UTF-8": (
        [*MERGE, "--adapter", "{ADAPTER}", "--probes", "p.txt"],
        {"p.txt": b"\xff\n"},
        ["--probes p.txt", "UTF-8"],
    ),
    "--probes empty": ([*MERGE, "--adapter", "{ADAPTER}", "--probes", "p.txt"], {"p.txt": "\n"}, ["--probes p.txt"]),
    "--probes missing": ([*MERGE, "--adapter", "{ADAPTER}", "--probes", "nope.txt"], {}, ["--probes nope.txt"]),
    "--run a file": ([*MERGE, "--adapter", "{ADAPTER}", "--run", "f.txt"], {"f.txt": "x"}, ["--run f.txt"]),
    "--run results not JSON": (
        [*MERGE, "--adapter", "{ADAPTER}", "--run", "r"],
        {"r/results.json": "{"},
        ["r/results.json", "unreadable"],
    ),
    "--run results a list": (
        [*MERGE, "--adapter", "{ADAPTER}", "--run", "r"],
        {"r/results.json": "[]"},
        ["r/results.json", "JSON object"],
    ),
    "--run results not UTF-8": (
        [*MERGE, "--adapter", "{ADAPTER}", "--run", "r"],
        {"r/results.json": b"\xff"},
        ["r/results.json", "unreadable"],
    ),
    "--run metrics a string": (
        [*MERGE, "--adapter", "{ADAPTER}", "--run", "r"],
        {"r/results.json": '{"suite": "s", "metrics": "x", "metric_info": {}}'},
        ["r/results.json", "'metrics'"],
    ),
    "--base unknown hub id": (
        ["merge", "--base", "no-org/no-model", "--adapter", "{ADAPTER}", "--out", "e"],
        {},
        ["--base no-org/no-model"],
    ),
    "--base missing path": (
        ["merge", "--base", "./nope", "--adapter", "{ADAPTER}", "--out", "e"],
        {},
        ["./nope", "not found"],
    ),
    "--base unknown architecture": (
        ["merge", "--base", "b", "--adapter", "{ADAPTER}", "--out", "e"],
        {"b/config.json": '{"model_type": "no-such-arch"}'},
        ["--base b"],
    ),
    "--base config not JSON": (
        ["merge", "--base", "b", "--adapter", "{ADAPTER}", "--out", "e"],
        {"b/config.json": "{"},
        ["--base b"],
    ),
    "--base with remote code": (
        ["merge", "--base", "rc", "--adapter", "{ADAPTER}", "--out", "e"],
        REMOTE_CODE,
        ["--base rc", "custom code"],
    ),
    "--adapter missing": ([*MERGE, "--adapter", "nope"], {}, ["nope", "not found"]),
    "--adapter config not JSON": (
        [*MERGE, "--adapter", "a"],
        {"a/adapter_config.json": "{", "a/adapter_model.safetensors": "x"},
        ["adapter_config.json"],
    ),
    "--adapter train record a list": (
        [*MERGE, "--adapter", "a"],
        {"a/adapter_config.json": "{}", "a/train_record.json": "[1]", "a/adapter_model.safetensors": "x"},
        ["train_record.json"],
    ),
    "--out exists": ([*MERGE[:-1], "f.txt", "--adapter", "{ADAPTER}"], {"f.txt": "x"}, ["f.txt", "--overwrite"]),
    "--dry-run alone": ([*MERGE, "--adapter", "{ADAPTER}", "--dry-run"], {}, ["--dry-run"]),
}

# --- a damaged adapter, wherever one is loaded ------------------------------------------------------
DAMAGED = {
    "eval truncated adapter weights": (
        ["eval", SUITE, "--adapter", "cut={TRUNCATED}", "--limit", "1"],
        {},
        ["adapter_model.safetensors", "cut short"],
    ),
    "generate truncated adapter weights": (
        [*GEN, "--prompt", "x", "--adapter", "cut={TRUNCATED}"],
        {},
        ["adapter_model.safetensors", "cut short"],
    ),
    "chat truncated adapter weights": (
        ["chat", "--base", "tiny:llama-ko", "--adapter", "cut={TRUNCATED}"],
        {},
        ["adapter_model.safetensors", "cut short"],
    ),
    "merge truncated adapter weights": (
        [*MERGE, "--adapter", "{TRUNCATED}"],
        {},
        ["adapter_model.safetensors", "cut short"],
    ),
    "train empty training split": (
        [
            "train",
            "--data",
            "d.jsonl",
            "--set",
            "data.validation_fraction=0.9",
            "--set",
            "training.max_steps=1",
            "--output-dir",
            "out",
        ],
        {"d.jsonl": jsonl(ROW, ROW)},
        ["data.validation_fraction", "none to train on"],
    ),
    "eval answers a number in JSONL": (
        ["eval", SUITE, "--data", "d.jsonl"],
        {"d.jsonl": jsonl({**ROW, "answers": 5})},
        ["d.jsonl", "'answers'", "int"],
    ),
    "eval answers missing in JSONL": (
        ["eval", SUITE, "--data", "d.jsonl"],
        {"d.jsonl": jsonl({k: v for k, v in ROW.items() if k != "answers"})},
        ["d.jsonl", "'answers'", "dataset.fields"],
    ),
    "eval num_beams huge": (["eval", SUITE, "--set", "generation.num_beams=100000"], {}, ["generation.num_beams"]),
    "eval prompt not jinja": (
        ["eval", SUITE, "--limit", "1", "--set", "prompt.text={{ x"],
        {},
        ["prompt", "jinja2 syntax error"],
    ),
}

# --- harness chat and doctor: what they read before the session --------------------------------------
OTHER = {
    "chat --base missing": (["chat", "--base", "./nope"], {}, ["./nope"]),
    "chat --seed huge": (["chat", "--base", "tiny:llama-ko", "--seed", "100000000000000000000000"], {}, ["seed"]),
    "chat --generation not UTF-8": (
        ["chat", "--base", "tiny:llama-ko", "--generation", "g.yaml"],
        {"g.yaml": NOT_UTF8},
        ["g.yaml", "UTF-8"],
    ),
    "report no run": (["report", "--runs-root", "nope"], {}, ["nope", "no finished run"]),
    "report run missing": (["report", "nope"], {}, ["nope", "no such run directory"]),
    "report run a file": (["report", "f.txt"], {"f.txt": "x"}, ["f.txt", "not a directory"]),
    "rescore run missing": (["rescore", "nope"], {}, ["nope", "no such run directory"]),
    "rescore run empty folder": (["rescore", "r"], {"r/x": ""}, ["config.json", "not found"]),
}

TABLE = {
    f"{argv[0]}: {case}": (argv, files, needles)
    for table in (
        EVAL,
        {
            k: (["eval", SUITE, "--data", name], {name: content}, needles)
            for k, (content, name, needles) in DATA.items()
        },
        TRAIN,
        GENERATE,
        MERGE_CASES,
        DAMAGED,
        OTHER,
    )
    for case, (argv, files, needles) in table.items()
}
assert len(TABLE) == len(EVAL) + len(DATA) + len(TRAIN) + len(GENERATE) + len(MERGE_CASES) + len(DAMAGED) + len(OTHER)


@pytest.mark.parametrize("case", list(TABLE), ids=list(TABLE))
def test_bad_input_is_one_line(case, workdir, run_cli, request):
    argv, files, needles = TABLE[case]
    for name, content in files.items():
        path = workdir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    for mark, fixture in (("{ADAPTER}", "fault_adapter"), ("{TRUNCATED}", "truncated_adapter")):
        if any(mark in a for a in argv):
            path = str(request.getfixturevalue(fixture))
            argv = [a.replace(mark, path) for a in argv]
    code, _out, err = run_cli(argv)
    assert_one_line_error(code, err, argv[0], needles)
    # Nothing half-made is left where the outputs go.
    assert not (workdir / "out").exists() and not (workdir / "exports").exists()
