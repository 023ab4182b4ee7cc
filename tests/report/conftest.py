"""A realistic run directory built in-process, without the model stack.

Records get their per-sample scores from the real KorQuAD metrics (harness.metrics through
harness.metrics.build_metric) and results.json comes from harness.metrics.aggregate.aggregate, as in
`harness eval`; only the generations are written by hand.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from harness.metrics import build_metric
from harness.metrics.aggregate import Scorer, aggregate, score_record
from harness.runs.store import RunDir, content_key

SHA = "a2a9d7d670a41c763881be15e84137593b9f3d699b836b736e36d3a7a2df8009"
CONTEXTS = [
    "은솔마을은 강원도 깊은 산골짜기에 자리한 작은 마을로, 약 320명의 주민이 살고 있다. 마을은 1962년에 광산 노동자들이 모여 살면서 처음 생겨났다.",
    "한빛대학교는 1946년에 세워진 사립 대학이다. 본교는 서울 마포구에 있으며, 2019년 기준 재학생은 약 1만 8천 명이다.",
    "푸른강 다리는 길이 1.2킬로미터의 현수교로 2004년에 개통했다. 하루 평균 4만 대의 차량이 이 다리를 지난다.",
]
QUESTIONS = [
    ("주민은 약 몇 명인가?", ["320명", "약 320명"]),
    ("언제 세워졌는가?", ["1946년"]),
    ("다리의 길이는?", ["1.2킬로미터"]),
]


def qa_scorers(references):
    scorers = []
    for name in ("exact_match", "f1"):
        metric = build_metric(name, {}, references)
        scorers.append(
            Scorer(
                label=metric.label,
                higher_is_better=metric.higher_is_better,
                version=metric.version,
                per_sample=lambda r, f=metric.per_sample: f(r["prediction"], r["references"]),
            )
        )
    return scorers


def qa_prompt(context: str, question: str) -> str:
    return f"### 문맥:\n{context}\n\n### 질문:\n{question}\n\n### 답변:\n"


def write_run(
    root: Path,
    run_id: str,
    samples: list[dict],
    outputs: dict[str, list[str]],
    *,
    suite: str = "korquad-sample",
    sha: str = SHA,
    history: bool = True,
    resamples: int = 200,
) -> Path:
    """samples: [{id, prompt, references}], outputs: model name -> predictions (base first)."""
    run = RunDir(Path(root) / run_id).create()
    scorers = qa_scorers([s["references"] for s in samples])
    records = {}
    for model, preds in outputs.items():
        recs = []
        for s, pred in zip(samples, preds):
            r = {
                "id": s["id"],
                "prompt": s["prompt"],
                "references": s["references"],
                "output": pred,
                "prediction": pred.strip().split("\n", 1)[0].strip(),
                "prompt_tokens": len(s["prompt"]) // 2,
                "generated_tokens": len(pred) // 2 + 1,
                "stop_reason": "eos",
            }
            r["key"] = content_key(model, s["prompt"])
            r["metrics"] = score_record(r, scorers)
            recs.append(r)
        run.write_records(model, recs)
        records[model] = recs
    results = aggregate(records, scorers, "base" if "base" in records else None, resamples, 0, 0.95)
    dataset = {
        "source": "builtin:korquad_sample",
        "path": "/data/korquad_sample.json",
        "format": "squad",
        "sha256": sha,
        "examples": len(samples),
    }
    train = {
        "name": "ko-qa",
        "base_model": "tiny:llama-ko",
        "data": {"path": "builtin:korquad_sample", "examples": 88, "template": "qa-ko"},
        "history": [
            {"step": 1, "loss": 10.5},
            {"step": 20, "loss": 8.3},
            {"step": 22, "eval_loss": 7.6},
            {"step": 40, "loss": 6.4},
            {"step": 44, "eval_loss": 7.4},
            {"step": 60, "loss": 5.9},
        ],
        "global_steps": 60,
        "train_runtime_s": 42.0,
        "config": {"lora": {"r": 16, "alpha": 32}, "training": {"learning_rate": 0.0002, "epochs": 3}},
    }
    models = []
    for model in outputs:
        if model == "base":
            models.append(
                {
                    "name": "base",
                    "kind": "base",
                    "ref": "tiny:llama-ko",
                    "path": "/cache/tiny",
                    "quantization": {"mode": "nf4", "double_quant": True, "compute_dtype": "auto"},
                    "compute_dtype": "fp32",
                }
            )
        else:
            models.append(
                {
                    "name": model,
                    "kind": "adapter",
                    "path": f"adapters/{model}",
                    "sha256": "ab" * 32,
                    "base": "tiny:llama-ko",
                    "train_record": train if history else None,
                }
            )
    generation = {"max_new_tokens": 24, "do_sample": False, "stop": ["\n"]}
    results.update(
        {
            "harness_version": "0.1.0",
            "suite": suite,
            "task": "qa",
            "run_id": run_id,
            "finished_at": "2026-11-23T20:10:44+0000",
            "dataset": dataset,
            "models": models,
            "generation": generation,
            "prompt": {"template": "qa-ko", "chat": False, "fewshot": {"k": 0}},
            "n_samples": len(samples),
            "throughput": {m: {"samples": len(samples), "samples_per_s": 3.2} for m in outputs},
            "environment": {"device": "cpu", "device_name": "x86_64", "versions": {"torch": "2.13.0"}},
        }
    )
    run.write_json(
        "config.json",
        {
            "suite": {"name": suite, "task": "qa"},
            "source": "suites/korquad_sample.yaml",
            "dataset": dataset,
            "models": models,
        },
    )
    run.write_json(
        "environment.json",
        {
            "device": "cpu",
            "device_name": "x86_64",
            "python": "3.11.7",
            "versions": {"torch": "2.13.0+cpu", "transformers": "5.23.0", "harness": "0.1.0"},
        },
    )
    run.write_json("results.json", results)
    return run.path


def qa_samples(n: int, seed: int = 0) -> tuple[list[dict], dict[str, list[str]]]:
    rng = random.Random(seed)
    samples, base, tuned, other = [], [], [], []
    for i in range(n):
        c = i % len(CONTEXTS)
        question, refs = QUESTIONS[c]
        samples.append({"id": f"s{i:03d}", "prompt": qa_prompt(CONTEXTS[c], question), "references": refs})
        base.append(rng.choice(["산 노동자들", "모르겠다", refs[0] + " 정도"]))
        tuned.append(refs[0] if rng.random() < 0.6 else rng.choice(["1962년", "서울"]))
        other.append(refs[-1] if rng.random() < 0.4 else "잘 모르겠습니다")
    return samples, {"base": base, "ko-qa": tuned, "ko-qa-v2": other}


@pytest.fixture
def qa_run(tmp_path) -> Path:
    samples, outputs = qa_samples(24)
    return write_run(tmp_path / "runs", "korquad-sample-aaaa111111", samples, outputs)


@pytest.fixture
def write_qa_run():
    return write_run


@pytest.fixture
def make_samples():
    return qa_samples
