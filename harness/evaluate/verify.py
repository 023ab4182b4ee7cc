"""`verify: N`: the first N samples of every column again on the plain path (4-bit base + peft adapter,
transformers' generate, batch 1), compared with what the run recorded: the evidence that the fast path
computes the same model. A choice task's plain path scores every choice's row in its own whole
forward; its log-likelihoods and predictions are compared."""

from __future__ import annotations

import time

from harness.engine.model_info import encoder_decoder
from harness.evaluate.execute import run_task
from harness.evaluate.plan import Column, EvalPlan

AGAINST = "4-bit base + peft adapter, transformers generate, batch 1"
AGAINST_CHOICE = "4-bit base + peft adapter, each choice's row in its own transformers forward"


def verify_columns(plan: EvalPlan, records: dict[str, list[dict]]) -> dict[str, dict]:
    verified = {}
    for column in plan.columns.values():
        fast = {r["id"]: r for r in records[column.label]}
        verified[column.label] = verify(plan, column, plan.requests[: plan.suite.verify], fast)
        plan.log(f"harness eval: verify {column.label}: {verified[column.label]['summary']}")
    return verified


def verify(plan: EvalPlan, column: Column, requests: list, fast: dict[str, dict]) -> dict:
    plain: dict[str, dict] = {}
    started = time.time()
    suite, tokenizer = column.suite.model_copy(update={"engine": "plain"}), plan.models.base.tokenizer

    def keep(record: dict) -> None:
        plain[record["id"]] = record

    with plan.models.use(column.model) as model:
        run_task(plan.task, model, tokenizer, suite, requests, 1, keep)
    ids = [r.id for r in requests]
    out = {
        "samples": len(ids),
        "engine": plan.engine,
        "against": AGAINST_CHOICE if plan.task.kind == "choice" else AGAINST,
        "wall_s": round(time.time() - started, 3),
    }
    compare = {"perplexity": _compare_nll, "choice": _compare_choices}.get(plan.task.kind, _compare_answers)
    compared = compare(ids, plain, fast)
    if encoder_decoder(plan.models.base.model):
        compared["summary"] += " (an encoder-decoder runs on the plain path: only batching and padding are compared)"
    return {**out, **compared}


def _compare_nll(ids: list[str], plain: dict[str, dict], fast: dict[str, dict]) -> dict:
    worst = max(abs(plain[i]["nll"] - fast[i]["nll"]) / max(abs(plain[i]["nll"]), 1e-12) for i in ids)
    return {
        "max_relative_nll_difference": worst,
        "summary": f"{len(ids)} documents, NLL within {worst:.2e} (relative) of the plain path",
    }


def _compare_choices(ids: list[str], plain: dict[str, dict], fast: dict[str, dict]) -> dict:
    worst = max(
        (abs(a - b) for i in ids for a, b in zip(plain[i]["loglikelihoods"], fast[i]["loglikelihoods"])), default=0.0
    )
    agreement = _agreement(ids, plain, fast, "prediction")
    return {
        **agreement,
        "max_abs_loglikelihood_difference": worst,
        "summary": f"{agreement['agree']}/{len(ids)} predictions equal the plain path's, "
        f"choice log-likelihoods within {worst:.2e} nats",
    }


def _compare_answers(ids: list[str], plain: dict[str, dict], fast: dict[str, dict]) -> dict:
    agreement = _agreement(ids, plain, fast, "output")
    return {**agreement, "summary": f"{agreement['agree']}/{len(ids)} answers equal the plain path's"}


def _agreement(ids: list[str], plain: dict[str, dict], fast: dict[str, dict], field: str) -> dict:
    """How many samples' `field` is the same on both paths, and the first of those that differ."""
    differ = [i for i in ids if plain[i][field] != fast[i][field]]
    return {"agree": len(ids) - len(differ), "agreement": (len(ids) - len(differ)) / len(ids), "differ": differ[:50]}
