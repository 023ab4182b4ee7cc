"""From per-sample records to aggregates with bootstrap intervals and paired deltas.

Pure (no torch): `harness rescore` and `harness report` use it without the model stack.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from harness.metrics.stats import corpus_ci, mean_ci, paired_delta_ci


@dataclass(frozen=True)
class Scorer:
    """One reported number. Per-sample scorers are averaged; corpus scorers see a whole subset."""

    label: str
    per_sample: Callable[[dict], float] | None = None
    corpus: Callable[[list[dict]], float] | None = None
    higher_is_better: bool = True
    version: str = ""


def score_record(record: dict, scorers: list[Scorer]) -> dict:
    return {s.label: round(float(s.per_sample(record)), 6) for s in scorers if s.per_sample is not None}


def aggregate(records: dict[str, list[dict]], scorers: list[Scorer], base: str | None,
              resamples: int = 1000, seed: int = 0, confidence: float = 0.95) -> dict:
    """`records[model]` lists records in the same sample order for every model."""
    boot = dict(seed=seed, n_resamples=resamples, confidence=confidence)
    metrics: dict[str, dict] = {}
    for model, recs in records.items():
        metrics[model] = {s.label: _interval(s, recs, boot).to_dict() for s in scorers}
    deltas: dict[str, dict] = {}
    if base is not None and base in records:
        for model, recs in records.items():
            if model == base:
                continue
            _check_aligned(records[base], recs, base, model)
            deltas[model] = {}
            for s in scorers:
                interval = _paired(s, records[base], recs, boot)
                entry = interval.to_dict()
                entry["excludes_zero"] = interval.excludes_zero
                entry["improved"] = interval.excludes_zero and (interval.value > 0) == s.higher_is_better
                entry["regressed"] = interval.excludes_zero and (interval.value > 0) != s.higher_is_better
                deltas[model][s.label] = entry
    return {
        "metrics": metrics,
        "deltas": deltas,
        "metric_info": {s.label: {"higher_is_better": s.higher_is_better, "version": s.version,
                                  "kind": "per_sample" if s.per_sample else "corpus"} for s in scorers},
        "bootstrap": {"resamples": resamples, "seed": seed, "confidence": confidence},
    }


def _interval(scorer: Scorer, recs: list[dict], boot: dict):
    if scorer.per_sample is not None:
        return mean_ci([r["metrics"][scorer.label] for r in recs], **boot)
    return corpus_ci(lambda idx: scorer.corpus([recs[i] for i in idx]), len(recs), **boot)


def _paired(scorer: Scorer, base: list[dict], other: list[dict], boot: dict):
    if scorer.per_sample is not None:
        return paired_delta_ci([r["metrics"][scorer.label] for r in other],
                               [r["metrics"][scorer.label] for r in base], **boot)
    return corpus_ci(lambda idx: scorer.corpus([other[i] for i in idx]) - scorer.corpus([base[i] for i in idx]),
                     len(base), **boot)


def _check_aligned(a: list[dict], b: list[dict], name_a: str, name_b: str) -> None:
    if [r["id"] for r in a] != [r["id"] for r in b]:
        raise ValueError(f"records of '{name_a}' and '{name_b}' cover different samples; re-run the eval to complete them")


def repetition_summary(records: list[dict]) -> dict | None:
    """Mean degeneration statistics of one model's generations: distinct-1/2, the longest repeated
    n-gram's length, and the share of outputs that ran into max_new_tokens. None without generations."""
    stats = [r["repetition"] for r in records if isinstance(r.get("repetition"), dict)]
    if not stats:
        return None

    def mean(values: list[float]) -> float:
        return round(sum(values) / len(values), 6)

    return {
        "distinct_1": mean([s.get("distinct_1", 0.0) for s in stats]),
        "distinct_2": mean([s.get("distinct_2", 0.0) for s in stats]),
        "longest_repeat_len": mean([s.get("longest_repeat_len", 0) for s in stats]),
        "hit_limit_rate": mean([1.0 if r.get("stop_reason") == "length" else 0.0
                                for r in records if isinstance(r.get("repetition"), dict)]),
        "n": len(stats),
    }
