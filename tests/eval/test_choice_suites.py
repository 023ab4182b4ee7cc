"""The multiple-choice suites (suites/kobest_*, kmmlu*, haerae, click) run through `harness eval` on
their samples (tests/data/choice/, written in each hub dataset's columns), and every record's context,
choices, gold, subject and category equal a reference written here from lm-evaluation-harness 0.4.13's
task definitions (the yaml and utils.py of lm_eval/tasks/{kobest,kmmlu,haerae,click})."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow
import pyarrow.parquet
import pytest

from harness.data.readers import load_dataset
from harness.errors import DataError

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "tests" / "data" / "choice"
QUICK = ["--set", "bootstrap.resamples=10", "--base", "tiny:llama-ko"]


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


# lm-eval's doc_to_text / doc_to_choice / doc_to_target, transcribed from its utils.py and yaml.
def copa(doc):
    connector = {"원인": " 왜냐하면", "결과": " 그래서"}[doc["question"].strip()]
    choices = [doc["alternative_1"], doc["alternative_2"]]
    target = doc["alternative_1"] if doc["label"] == 0 else doc["alternative_2"]
    return f"""{doc["premise"]} {connector}""", choices, choices.index(target)


def kmmlu(doc):
    text = f"{doc['question'].strip()}\nA. {doc['A']}\nB. {doc['B']}\nC. {doc['C']}\nD. {doc['D']}\n정답："
    return text, ["A", "B", "C", "D"], doc["answer"] - 1


def click(doc):
    ctx, q, opt = doc["paragraph"], doc["question"], doc["choices"]
    options = f"A:{opt[0]}, B: {opt[1]}, C: {opt[2]}, D: {opt[3]}"
    if ctx:
        text = (
            "주어진 맥락을 천천히 읽고, 질문에 대한 적절한 정답을 A, B, C, D 중에 골라 알파벳 하나로 답하시오."
            f"\n\n맥락: {ctx}\n질문: {q}\n보기:\n{options}\n정답:"
        )
    else:
        text = (
            "주어진 질문을 천천히 읽고, 적절한 정답을 A, B, C, D 중에 골라 알파벳 하나로 답하시오."
            f"\n\n질문: {q}\n보기:\n{options}\n정답:"
        )
    letters = ["A", "B", "C", "D", "E"] if "CSAT" in doc["id"] else ["A", "B", "C", "D"]
    return text, letters, doc["choices"].index(doc["answer"])


REFERENCE = {
    "kobest_boolq": lambda d: (f"{d['paragraph']} 질문: {d['question']} 답변: ", ["아니오", "예"], d["label"]),
    "kobest_copa": copa,
    "kobest_hellaswag": lambda d: (f"문장: {d['context']}", [d[f"ending_{i}"] for i in range(1, 5)], d["label"]),
    "kobest_sentineg": lambda d: (f"""문장: {d["sentence"]} 긍부정:""", ["부정", "긍정"], d["label"]),
    "kobest_wic": lambda d: (
        f"""문장1: {d["context_1"]} 문장2: {d["context_2"]} 두 문장에서 {d["word"]}가 같은 뜻으로 쓰였나?""",
        ["아니오", "예"],
        d["label"],
    ),
    "kmmlu": kmmlu,
    "kmmlu_hard": kmmlu,
    "haerae": lambda d: (
        d["query"],
        ["(A)", "(B)", "(C)", "(D)", "(E)"],
        ["(A)", "(B)", "(C)", "(D)", "(E)"].index(d["answer"]),
    ),
    "click": click,
}

# lm-eval's subtask filters (click_cul/utils.py, click_lang/utils.py extract_*), in the suite's order.
CUE = ("대화", "발화", "질의")
CLICK_FILTERS = {
    "click_cul_society": lambda d: "society" in d["id"].lower(),
    "click_cul_tradition": lambda d: "tradition" in d["id"].lower(),
    "click_cul_politics": lambda d: "politics" in d["id"].lower(),
    "click_cul_economy": lambda d: "economy" in d["id"].lower(),
    "click_cul_law": lambda d: "law" in d["id"].lower() or "PSAT" in d["id"],
    "click_cul_history": lambda d: "KHB" in d["id"] or "history" in d["id"].lower(),
    "click_cul_geography": lambda d: "geography" in d["id"].lower(),
    "click_cul_kpop": lambda d: "popular" in d["id"].lower(),
    "click_lang_text": lambda d: (
        "CSAT_korean_22" in d["id"]
        or ("CSAT_korean_23" in d["id"] and int(d["id"].split("_")[-1]) < 35)
        or ("TK" in d["id"] and int(d["id"].split("_")[-1]) > 4)
    ),
    "click_lang_grammar": lambda d: (
        ("CSAT_korean" in d["id"] and int(d["id"].split("_")[2]) < 21 and int(d["id"].split("_")[3]) > 10)
        or ("Kedu_1" in d["id"] and (d["id"].split("_")[1] != "16" or not any(c in d["question"] for c in CUE)))
        or ("TK" in d["id"] and int(d["id"].split("_")[-1]) < 5)
    ),
    "click_lang_function": lambda d: (
        (
            "CSAT_korean" in d["id"]
            and (
                int(d["id"].split("_")[-1]) > 34
                or (int(d["id"].split("_")[2]) < 21 and int(d["id"].split("_")[3]) < 11)
            )
        )
        or ("Kedu_16" in d["id"] and any(c in d["question"] for c in CUE))
        or "PSE_korean" in d["id"]
    ),
}


def subject_of(suite: str, doc: dict):
    if suite in ("kmmlu", "kmmlu_hard", "haerae"):
        return doc["config"]
    if suite == "click":
        return next((name for name, takes in CLICK_FILTERS.items() if takes(doc)), None)
    return None


def category_of(suite: str, subject):
    if suite == "click":
        return subject.split("_")[1].replace("cul", "culture").replace("lang", "language")
    return {
        "Accounting": "HUMSS",
        "Math": "STEM",
        "Korean-History": "HUMSS",
        "accounting": "HUMSS",
        "math": "STEM",
    }.get(subject)


# suite → (--data, the evaluated rows as the sample holds them)
CASES = {
    **{
        f"kobest_{c}": (SAMPLES / "kobest", rows(SAMPLES / "kobest" / c / "test.jsonl"))
        for c in ("boolq", "copa", "hellaswag", "sentineg", "wic")
    },
    "kmmlu": (SAMPLES / "kmmlu" / "test.jsonl", rows(SAMPLES / "kmmlu" / "test.jsonl")),
    "kmmlu_hard": (SAMPLES / "kmmlu_hard" / "test.jsonl", rows(SAMPLES / "kmmlu_hard" / "test.jsonl")),
    "haerae": (SAMPLES / "haerae" / "test.jsonl", rows(SAMPLES / "haerae" / "test.jsonl")),
    "click": (SAMPLES / "click" / "train.jsonl", rows(SAMPLES / "click" / "train.jsonl")),
}


def evaluate(run_cli, workdir, suite: str, data: Path, *sets: str) -> list[dict]:
    """`harness eval` of the suite on `data`, with `--set` for each of `sets`; the base's records."""
    code, _out, err = run_cli(
        ["eval", REPO / "suites" / f"{suite}.yaml", "--data", data, "--out", workdir / "runs", "--run-id", suite]
        + QUICK
        + [arg for setting in sets for arg in ("--set", setting)]
    )
    assert code == 0, err
    return rows(workdir / "runs" / suite / "records" / "base.jsonl")


@pytest.mark.parametrize("suite", list(CASES))
def test_a_suite_on_its_sample_builds_lm_evals_requests(run_cli, workdir, suite):
    data, docs = CASES[suite]
    records = evaluate(run_cli, workdir, suite, data)
    kept = [d for d in docs if suite != "click" or subject_of(suite, d)]
    assert len(records) == len(kept)
    for record, doc in zip(records, kept):
        context, choices, gold = REFERENCE[suite](doc)
        assert (record["prompt"], record["choices"], record["gold"]) == (context, choices, [gold]), doc
        assert len(record["loglikelihoods"]) == len(choices)
        if subject_of(suite, doc) is not None:
            subject = subject_of(suite, doc)
            assert (record["subject"], record["category"]) == (subject, category_of(suite, subject))


def test_the_exact_strings_of_a_few_rows(run_cli, workdir):
    """Spelled out by hand: COPA's two spaces before the connector, and CLIcK's CSAT row with five
    letters but four options shown."""
    copa_records = evaluate(run_cli, workdir, "kobest_copa", SAMPLES / "kobest")
    assert copa_records[0]["prompt"] == "물이 끓기 시작했다.  왜냐하면"
    assert copa_records[1]["prompt"] == "휴대전화 배터리가 다 떨어졌다.  그래서" and copa_records[1]["gold"] == [1]
    records = {r["id"]: r for r in evaluate(run_cli, workdir, "click", SAMPLES / "click" / "train.jsonl")}
    csat = records["CSAT_korean_19_15"]
    assert csat["prompt"] == (
        "주어진 질문을 천천히 읽고, 적절한 정답을 A, B, C, D 중에 골라 알파벳 하나로 답하시오.\n\n"
        "질문: 밑줄 친 말의 품사가 다른 하나는?\n보기:\nA:빨리, B: 매우, C: 아주, D: 예쁜\n정답:"
    )
    assert csat["choices"] == ["A", "B", "C", "D", "E"] and csat["gold"] == [3]
    assert csat["subject"] == "click_lang_grammar" and csat["category"] == "language"
    # lm-eval's click_cul_kpop and click_lang_grammar both take this id; the suite counts it under kpop.
    both = records["Culture_Popular_Kedu_12"]
    assert both["subject"] == "click_cul_kpop"
    assert "Unrelated_Quiz_1" not in records


def fewshot_reference(pool: list[dict], docs: list[dict], k: int, render, same_split: bool) -> list[str]:
    """lm-eval's default sampler: one Random(1234) per task (here: per subject), k draws per sample in
    order, k + 1 less the sample itself when the pool is the evaluated split; "\\n\\n" between examples."""
    rngs: dict = {}
    prompts = []
    for doc in docs:
        subject = doc.get("config")
        mine = [p for p in pool if p.get("config") == subject]
        rng = rngs.setdefault(subject, random.Random(1234))
        shots = [s for s in rng.sample(mine, k + 1) if s != doc][:k] if same_split else rng.sample(mine, k)
        prefix = ""
        for shot in shots:
            text, choices, gold = render(shot)
            prefix += text + " " + choices[gold] + "\n\n"
        prompts.append(prefix + render(doc)[0])
    return prompts


def test_kmmlu_few_shot_draws_from_each_subjects_dev_rows(run_cli, workdir):
    dev = SAMPLES / "kmmlu" / "dev.jsonl"
    records = evaluate(
        run_cli, workdir, "kmmlu", SAMPLES / "kmmlu" / "test.jsonl", "prompt.fewshot.k=2", f"prompt.fewshot.path={dev}"
    )
    docs = rows(SAMPLES / "kmmlu" / "test.jsonl")
    assert [r["prompt"] for r in records] == fewshot_reference(rows(dev), docs, 2, kmmlu, same_split=False)


def test_haerae_few_shot_from_the_test_split_never_shows_the_sample(run_cli, workdir):
    data = SAMPLES / "haerae" / "test.jsonl"
    records = evaluate(
        run_cli, workdir, "haerae", data, "prompt.fewshot.k=1", "dataset.name=[general_knowledge, history]"
    )
    docs = [d for d in rows(data) if d["config"] in ("general_knowledge", "history")]
    expected = fewshot_reference(docs, docs, 1, REFERENCE["haerae"], same_split=True)
    assert [r["prompt"] for r in records] == expected
    assert all(r["prompt"].count("### 정답:") == 2 for r in records)


def test_kobest_few_shot_comes_from_the_train_split_of_a_local_clone(run_cli, workdir):
    records = evaluate(run_cli, workdir, "kobest_boolq", SAMPLES / "kobest", "prompt.fewshot.k=2")
    train = rows(SAMPLES / "kobest" / "boolq" / "train.jsonl")
    docs = rows(SAMPLES / "kobest" / "boolq" / "test.jsonl")
    assert [r["prompt"] for r in records] == fewshot_reference(train, docs, 2, REFERENCE["kobest_boolq"], False)


def test_an_uncached_hub_dataset_offline_is_one_line_naming_the_fix(run_cli, workdir, monkeypatch):
    monkeypatch.delenv("KOBEST_PATH", raising=False)
    code, _out, err = run_cli(["eval", REPO / "suites" / "kobest_boolq.yaml", "--out", workdir / "runs"] + QUICK)
    line = err.strip()
    assert code == 2 and "\n" not in line, err
    for part in (
        "skt/kobest_v1",
        "name boolq",
        "kobest_boolq.yaml dataset.path",
        "run once online",
        "$KOBEST_PATH",
        "--data",
    ):
        assert part in line, (part, line)


def hub_folder(root: Path, configs: dict[str, dict[str, list[dict]]]) -> Path:
    """A script-less dataset folder as the hub stores one: configurations of splits, listed in README.md."""
    card = ["---", "configs:"]
    for config, splits in configs.items():
        card += [f"- config_name: {config}", "  data_files:"]
        for split, records in splits.items():
            path = root / config / f"{split}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
            card += [f"  - split: {split}", f"    path: {config}/{split}.jsonl"]
    (root / "README.md").write_text("\n".join(card + ["---", ""]), encoding="utf-8")
    return root


def test_several_hub_configurations_read_as_one_dataset(tmp_path):
    folder = hub_folder(
        tmp_path / "repo",
        {"a": {"test": [{"q": "가"}, {"q": "나"}], "dev": [{"q": "다"}]}, "b": {"test": [{"q": "라"}]}},
    )
    both = load_dataset(str(folder), split="test", hub={"name": ["a", "b"]})
    assert [(e["id"], e["config"], e["q"]) for e in both.examples] == [
        ("a/0", "a", "가"),
        ("a/1", "a", "나"),
        ("b/0", "b", "라"),
    ]
    one = load_dataset(str(folder), split="test", hub={"name": "a"})
    assert [e["id"] for e in one.examples] == ["0", "1"] and "config" not in one.examples[0]
    assert load_dataset(str(folder), split="test", hub={"name": ["b", "a"]}).sha256 != both.sha256


def test_a_local_file_stands_in_for_named_configurations(tmp_path):
    path = tmp_path / "copy.jsonl"
    path.write_text(
        "".join(json.dumps({"q": q, "config": c}) + "\n" for q, c in [("가", "a"), ("나", "b"), ("다", "c")])
    )
    kept = load_dataset(str(path), split="test", hub={"name": ["a", "c"]})
    assert kept.format == "jsonl" and [e["q"] for e in kept.examples] == ["가", "다"]
    assert [e["q"] for e in load_dataset(str(path), hub={"name": "b"}).examples] == ["나"]
    table = pyarrow.Table.from_pylist([{"q": "가", "config": "a"}, {"q": "나", "config": "b"}])
    pyarrow.parquet.write_table(table, tmp_path / "copy.parquet")
    assert [e["q"] for e in load_dataset(str(tmp_path / "copy.parquet"), hub={"name": ["b"]}).examples] == ["나"]
    bare = tmp_path / "bare.jsonl"
    bare.write_text('{"q": "가"}\n')
    assert len(load_dataset(str(bare), hub={"name": "boolq"}).examples) == 1  # the file is that configuration
    with pytest.raises(
        DataError, match=r"bare.jsonl: the suite reads the configurations a, b but rows lack a 'config'"
    ):
        load_dataset(str(bare), hub={"name": ["a", "b"]})
