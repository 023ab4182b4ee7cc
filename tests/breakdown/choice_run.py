"""A choice run directory built in-process, the way `harness eval` writes one: the suite in
config.json, records scored by the choice task's own scorers, results.json from
harness.metrics.aggregate and harness.metrics.breakdown. Only the log-likelihoods are written by hand."""

from __future__ import annotations

import random
from pathlib import Path

from harness.config import SuiteConfig, validate
from harness.metrics.aggregate import aggregate, score_record
from harness.metrics.breakdown import breakdown
from harness.runs.store import RunDir, content_key
from harness.tasks import get_task

SUBJECTS = {"algebra": "STEM", "biology": "STEM", "history": "HUMSS", "law": "HUMSS", "cooking": "Other"}
# A subject and category from a hostile dataset: HTML, Markdown table syntax, a bidi override.
HOSTILE_SUBJECT, HOSTILE_CATEGORY = "<img src=x onerror=alert(3)>|**law**", "HUMSS </td><td>\u202e"
HOSTILE = [
    "<script>alert(1)</script>",
    "</script><img src=x onerror=alert(2)>",
    "**bold** | pipe `tick` [link](http://x)",
    "\u202eevil\u200b\u0000 &amp; &lt;",
]


def choice_suite(
    metrics=("acc", "acc_norm", "f1"), resamples: int = 200, hostile: bool = False, categories: bool = True
) -> SuiteConfig:
    raw = {
        "name": "choice-sample",
        "task": "choice",
        "dataset": {"path": "choice.jsonl"},
        "choice": {"context": "{{ question }}", "choices": "choices", "gold": "label", "subject": "subject"},
        "metrics": list(metrics),
        "bootstrap": {"resamples": resamples},
    }
    raw["choice"]["categories"] = dict(SUBJECTS) if categories else {}
    if hostile:
        raw["choice"]["categories"][HOSTILE_SUBJECT] = HOSTILE_CATEGORY
    return validate(SuiteConfig, raw, "choice suite")


def choice_samples(n: int, seed: int = 0, hostile: bool = False) -> list[dict]:
    """Samples spread unevenly over the subjects (so micro and macro differ)."""
    rng = random.Random(seed)
    names = list(SUBJECTS)
    samples = []
    for i in range(n):
        subject = names[min(len(names) - 1, int(rng.random() ** 2 * len(names)))]
        subject = HOSTILE_SUBJECT if hostile and subject == "law" else subject
        choices = [f"답 {i}-{k}" for k in range(4)]
        if hostile and i < len(HOSTILE):
            choices[i % 4] = HOSTILE[i]
        samples.append(
            {
                "id": f"s{i}",
                "question": f"질문 {i} <b>?</b>",
                "choices": choices,
                "label": rng.randrange(4),
                "subject": subject,
            }
        )
    return samples


def loglikelihoods(samples: list[dict], seed: int) -> list[list[float]]:
    rng = random.Random(seed)
    return [[-rng.uniform(0.5, 6.0) for _ in s["choices"]] for s in samples]


def choice_records(suite: SuiteConfig, samples: list[dict], lls: list[list[float]], model: str) -> list[dict]:
    scorers = get_task("choice").scorers(suite, [])
    records = []
    for s, ll in zip(samples, lls):
        best = max(range(len(ll)), key=lambda k: ll[k])
        r = {
            "id": s["id"],
            "prompt": "few-shot <i>example</i>\n\n" + s["question"],
            "references": [s["choices"][s["label"]]],
            "choices": s["choices"],
            "gold": [s["label"]],
            "loglikelihoods": ll,
            "is_greedy": [False] * len(ll),
            "choice_tokens": [2] * len(ll),
            "prediction": s["choices"][best],
            "subject": s["subject"],
            "category": suite.choice.categories.get(s["subject"]),
            "key": content_key(model, s["id"]),
        }
        r["metrics"] = score_record(r, scorers)
        records.append(r)
    return records


def write_choice_run(root: Path, n: int = 40, seed: int = 0, hostile: bool = False, suite=None) -> Path:
    suite = suite or choice_suite(hostile=hostile)
    scorers = get_task("choice").scorers(suite, [])
    samples = choice_samples(n, seed, hostile)
    records = {
        "base": choice_records(suite, samples, loglikelihoods(samples, seed + 1), "base"),
        "ko-mc": choice_records(suite, samples, loglikelihoods(samples, seed + 2), "ko-mc"),
    }
    run = RunDir(Path(root) / f"choice-sample-{seed:010d}").create()
    for model, recs in records.items():
        run.write_records(model, recs)
    b = suite.bootstrap
    settings = ("base", b.resamples, b.seed, b.confidence, b.correction)
    results = aggregate(records, scorers, *settings)
    results["breakdown"] = breakdown(records, scorers, *settings)
    dataset = {"source": "choice.jsonl", "path": "x", "format": "jsonl", "sha256": "d" * 64, "examples": n}
    models = [
        {"name": "base", "kind": "base", "ref": "tiny:llama-ko"},
        {"name": "ko-mc", "kind": "adapter", "path": "adapters/ko-mc", "sha256": "ab" * 32},
    ]
    results.update(
        {"harness_version": "0.1.0", "suite": suite.name, "task": "choice", "run_id": run.path.name}
        | {"dataset": dataset, "models": models, "n_samples": n, "prompt": suite.prompt.model_dump(mode="json")}
    )
    run.write_json("config.json", {"suite": suite.model_dump(mode="json"), "dataset": dataset, "models": models})
    run.write_json("results.json", results)
    return run.path
