"""A summarization run directory built in-process, the way `harness eval` writes one: the suite of
suites/summarization_ko.yaml in config.json, records scored by the task's own scorers, results.json
from harness.metrics.aggregate.aggregate. Only the generations are written by hand."""

from __future__ import annotations

import json
import random
from pathlib import Path

from harness.config import SuiteConfig, load_config
from harness.metrics.aggregate import aggregate, score_record
from harness.runs.store import RunDir, content_key
from harness.tasks import get_task

REPO = Path(__file__).resolve().parents[2]


def _samples(n: int) -> list[dict]:
    lines = (REPO / "harness" / "data" / "assets" / "summarization_ko.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines[:n]]


def _outputs(samples: list[dict], seed: int) -> dict[str, list[str]]:
    rng = random.Random(seed)
    base, tuned = [], []
    for s in samples:
        words = s["summary"].split()
        base.append(" ".join(s["document"].split()[: len(words)]))  # lead baseline
        kept = [w for w in words if rng.random() < 0.8]
        tuned.append(" ".join(kept or words[:1]))
    return {"base": base, "ko-sum": tuned}


def write_summarization_run(root: Path, n: int = 8, seed: int = 0, suite_overrides: dict | None = None) -> Path:
    suite = load_config(
        SuiteConfig, REPO / "suites" / "summarization_ko.yaml", suite_overrides or {"bootstrap.resamples": 200}
    )
    task = get_task(suite.task)
    samples = _samples(n)
    refs = [[s["summary"]] for s in samples]
    scorers = task.scorers(suite, refs)
    run = RunDir(Path(root) / f"summarization-ko-{seed:010d}").create()
    records = {}
    for model, preds in _outputs(samples, seed).items():
        recs = []
        for s, pred in zip(samples, preds):
            r = {
                "id": s["id"],
                "prompt": f"다음 글을 요약하세요.\n\n{s['document']}\n\n요약:",
                "references": [s["summary"]],
                "output": pred + "\n\n",
                "prediction": pred,
                "prompt_tokens": 100,
                "generated_tokens": 20,
                "stop_reason": "stop",
                "key": content_key(model, s["id"]),
            }
            r["metrics"] = score_record(r, scorers)
            recs.append(r)
        run.write_records(model, recs)
        records[model] = recs
    b = suite.bootstrap
    results = aggregate(records, scorers, "base", b.resamples, b.seed, b.confidence)
    dataset = {"source": "builtin:summarization_ko", "path": "x", "format": "jsonl", "sha256": "c" * 64, "examples": n}
    models = [
        {"name": "base", "kind": "base", "ref": "tiny:llama-ko"},
        {"name": "ko-sum", "kind": "adapter", "path": "adapters/ko-sum", "sha256": "ab" * 32},
    ]
    results.update(
        {
            "harness_version": "0.1.0",
            "suite": suite.name,
            "task": task.kind,
            "run_id": run.path.name,
            "dataset": dataset,
            "models": models,
            "n_samples": n,
            "generation": suite.generation.model_dump(mode="json"),
        }
    )
    run.write_json(
        "config.json",
        {
            "suite": suite.model_dump(mode="json"),
            "source": "suites/summarization_ko.yaml",
            "dataset": dataset,
            "models": models,
        },
    )
    run.write_json("results.json", results)
    return run.path
