"""Subject and category breakdowns in results.json, checked against a plain computation on the
records (statistics.mean per group, a macro-F1 written out here), and recomputed by rescore."""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from choice_run import choice_suite, write_choice_run

from harness.metrics.breakdown import breakdown
from harness.runs.rescore import rescore
from harness.runs.store import RunDir
from harness.runs.summary import results_table
from harness.tasks import get_task


def _records(run: Path) -> dict[str, list[dict]]:
    store = RunDir(run)
    return {column: store.read_records(column) for column in ("base", "ko-mc")}


def _plain_f1(recs: list[dict]) -> float:
    golds = [r["gold"][0] for r in recs]
    picks = [max(range(len(r["loglikelihoods"])), key=lambda k: r["loglikelihoods"][k]) for r in recs]
    scores = []
    for label in sorted(set(golds) | set(picks)):
        tp = sum(g == p == label for g, p in zip(golds, picks))
        fp = sum(p == label != g for g, p in zip(golds, picks))
        fn = sum(g == label != p for g, p in zip(golds, picks))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return 100 * statistics.mean(scores)


def _groups(recs: list[dict], key: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in recs:
        out.setdefault(r[key], []).append(r)
    return out


@pytest.fixture
def run(tmp_path) -> Path:
    return write_choice_run(tmp_path / "runs", n=60)


def test_subjects_and_categories_match_a_plain_computation(run):
    results = json.loads((run / "results.json").read_text())
    b = results["breakdown"]
    records = _records(run)
    for column, recs in records.items():
        col = b["columns"][column]
        subjects, categories = _groups(recs, "subject"), _groups(recs, "category")
        assert b["subjects"] == sorted(subjects) and b["categories"] == sorted(categories)
        for name, group in subjects.items():
            assert col["subjects"][name]["n"] == len(group)
            for label in ("acc", "acc_norm"):
                assert col["subjects"][name][label] == pytest.approx(
                    statistics.mean(r["metrics"][label] for r in group)
                )
            assert col["subjects"][name]["f1"] == pytest.approx(_plain_f1(group))
        for name, group in categories.items():
            entry = col["categories"][name]
            assert entry["n"] == len(group)
            acc = statistics.mean(r["metrics"]["acc"] for r in group)
            assert entry["acc"]["value"] == pytest.approx(acc)
            assert entry["acc"]["low"] <= acc <= entry["acc"]["high"]
            assert entry["f1"]["value"] == pytest.approx(_plain_f1(group))
        for label in ("acc", "acc_norm"):
            micro = statistics.mean(r["metrics"][label] for r in recs)
            by_subject = statistics.mean(statistics.mean(r["metrics"][label] for r in g) for g in subjects.values())
            by_category = statistics.mean(statistics.mean(r["metrics"][label] for r in g) for g in categories.values())
            assert results["metrics"][column][label]["value"] == pytest.approx(micro)
            assert col["macro_subjects"][label]["value"] == pytest.approx(by_subject)
            assert col["macro_categories"][label]["value"] == pytest.approx(by_category)
            low, high = col["macro_subjects"][label]["low"], col["macro_subjects"][label]["high"]
            assert low <= by_subject <= high
        assert col["macro_subjects"]["f1"]["value"] == pytest.approx(
            statistics.mean(_plain_f1(g) for g in subjects.values())
        )
        assert "low" not in col["macro_subjects"]["f1"]  # a corpus metric's macro: no interval
    # the samples are spread unevenly, so micro and macro differ
    assert b["columns"]["base"]["macro_subjects"]["acc"]["value"] != pytest.approx(
        results["metrics"]["base"]["acc"]["value"]
    )


def test_paired_deltas_per_category_and_macro(run):
    b = json.loads((run / "results.json").read_text())["breakdown"]
    records = _records(run)
    deltas = b["deltas"]["ko-mc"]
    assert set(deltas) == {"macro_subjects", "macro_categories", "categories"}
    base, tuned = _groups(records["base"], "category"), _groups(records["ko-mc"], "category")
    for name in base:
        diff = [t["metrics"]["acc"] - s["metrics"]["acc"] for s, t in zip(base[name], tuned[name])]
        entry = deltas["categories"][name]["acc"]
        assert entry["value"] == pytest.approx(statistics.mean(diff))
        assert entry["method"] == "newcombe" and 0 <= entry["p_adjusted"] <= 1
        assert isinstance(entry["improved"], bool) and isinstance(entry["regressed"], bool)
    columns = b["columns"]
    for macro in ("macro_subjects", "macro_categories"):
        want = columns["ko-mc"][macro]["acc"]["value"] - columns["base"][macro]["acc"]["value"]
        assert deltas[macro]["acc"]["value"] == pytest.approx(want)
    assert b["comparisons"] == 3 * (2 + len(base))  # metrics × (two macros + each category)
    assert "base" not in b["deltas"]


def test_no_subject_no_breakdown():
    recs = [{"id": str(i), "metrics": {"acc": 100.0 * (i % 2)}} for i in range(4)]
    scorers = get_task("choice").scorers(choice_suite(["acc"]), [])
    assert breakdown({"base": recs}, scorers, "base", 1000, 0, 0.95, "holm") is None


def test_rescore_recomputes_the_breakdown(run):
    results = json.loads((run / "results.json").read_text())
    results["breakdown"] = {"stale": True}
    (run / "results.json").write_text(json.dumps(results))
    out = rescore(run, metrics=["acc"]).results
    b = out["breakdown"]
    assert "stale" not in b
    assert set(b["columns"]["base"]["macro_subjects"]) == {"acc"}
    for column, recs in _records(run).items():
        for name, group in _groups(recs, "subject").items():
            assert b["columns"][column]["subjects"][name]["acc"] == pytest.approx(
                statistics.mean(r["metrics"]["acc"] for r in group)
            )


def test_terminal_table_has_categories_not_subjects(run):
    results = json.loads((run / "results.json").read_text())
    text = results_table(results)
    assert "STEM" in text and "HUMSS" in text
    assert "macro over 5 subjects" in text and "micro (all samples)" in text
    assert "algebra" not in text
    assert not math.isnan(results["breakdown"]["columns"]["base"]["macro_categories"]["acc"]["value"])


def test_subjects_without_categories(tmp_path):
    run = write_choice_run(tmp_path / "runs", n=30, suite=choice_suite(["acc"], categories=False))
    results = json.loads((run / "results.json").read_text())
    b = results["breakdown"]
    assert b["categories"] == [] and b["category_of"] == {} and b["uncategorized"] == 30
    assert set(b["columns"]["base"]) == {"subjects", "categories", "macro_subjects"}
    assert set(b["deltas"]["ko-mc"]) == {"macro_subjects", "categories"} and b["comparisons"] == 1
    lines = results_table(results).split("by category", 1)[1].splitlines()
    assert [line.split("  ")[0] for line in lines[2:]] == ["micro (all samples)", "macro over 5 subjects"]
