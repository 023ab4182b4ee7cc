"""From per-sample records to aggregates with intervals and paired deltas.

Per-sample values are kept at full precision: rounding them before the mean would move it.
A delta is marked improved or regressed when its p-value, adjusted by Holm's method over every
delta of the run (each metric of each compared column) unless `correction` is "none", is below
1 - confidence. Pure (no torch): `harness rescore` and `harness report` use it without the model
stack.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from harness.metrics.intervals import holm
from harness.metrics.stats import corpus_ci, mean_ci, paired_delta_ci

# Every per-sample metric harness computes is on a 0-100 scale; a column of only 0 and this is a
# proportion and gets an exact interval.
FULL_SCORE = 100.0
CORRECTIONS = ("holm", "none")


@dataclass(frozen=True)
class Scorer:
    """One reported number. Per-sample scorers are averaged; corpus scorers see a whole subset."""

    label: str
    per_sample: Callable[[dict], float] | None = None
    corpus: Callable[[list[dict]], float] | None = None
    higher_is_better: bool = True
    version: str = ""


def score_record(record: dict, scorers: list[Scorer]) -> dict:
    return {s.label: float(s.per_sample(record)) for s in scorers if s.per_sample is not None}


def aggregate(
    records: dict[str, list[dict]],
    scorers: list[Scorer],
    base: str | None,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    correction: str = "holm",
) -> dict:
    """`records[model]` lists records in the same sample order for every model."""
    if correction not in CORRECTIONS:
        raise ValueError(f"bootstrap.correction: {correction!r}; choose one of {', '.join(CORRECTIONS)}")
    boot = dict(seed=seed, n_resamples=resamples, confidence=confidence)
    metrics: dict[str, dict] = {}
    for model, recs in records.items():
        metrics[model] = {}
        for s in scorers:
            entry = interval(s, recs, boot).to_dict()
            entry.pop("p_value", None)  # a test of "the metric is 0" answers nothing anyone asked
            metrics[model][s.label] = entry
    deltas: dict[str, dict] = {}
    if base is not None and base in records:
        for model, recs in records.items():
            if model == base:
                continue
            _check_aligned(records[base], recs, base, model)
            deltas[model] = {s.label: paired_delta(s, records[base], recs, boot).to_dict() for s in scorers}
    comparisons = mark_deltas(deltas, scorers, 1 - confidence, correction)
    return {
        "metrics": metrics,
        "deltas": deltas,
        "metric_info": {
            s.label: {
                "higher_is_better": s.higher_is_better,
                "version": s.version,
                "kind": "per_sample" if s.per_sample else "corpus",
            }
            for s in scorers
        },
        "bootstrap": {
            "resamples": resamples,
            "seed": seed,
            "confidence": confidence,
            "correction": correction,
            "comparisons": comparisons,
        },
    }


def mark_deltas(deltas: dict[str, dict], scorers: list[Scorer], alpha: float, correction: str) -> int:
    """Set each delta's improved/regressed from its (Holm-adjusted) p-value; return the family size."""
    entries = [(deltas[model][s.label], s) for model in deltas for s in scorers]
    p_values = [1.0 if e.get("p_value") is None else e["p_value"] for e, _ in entries]
    adjusted = holm(p_values) if correction == "holm" else p_values
    for (entry, s), p in zip(entries, adjusted):
        if correction == "holm":
            entry["p_adjusted"] = p
        significant = p < alpha and entry["n"] >= 2 and entry["value"] is not None and entry["value"] != 0
        entry["improved"] = significant and (entry["value"] > 0) == s.higher_is_better
        entry["regressed"] = significant and (entry["value"] > 0) != s.higher_is_better
    return len(entries)


def interval(scorer: Scorer, recs: list[dict], boot: dict):
    """The scorer's figure over `recs` with its interval (a mean's, or a corpus metric's bootstrap)."""
    if scorer.per_sample is not None:
        return mean_ci([r["metrics"][scorer.label] for r in recs], full_score=FULL_SCORE, **boot)
    return corpus_ci(lambda idx: scorer.corpus([recs[i] for i in idx]), len(recs), **boot)


def paired_delta(scorer: Scorer, base: list[dict], other: list[dict], boot: dict):
    """`other` minus `base` on the same samples, with its paired interval."""
    if scorer.per_sample is not None:
        return paired_delta_ci(
            [r["metrics"][scorer.label] for r in other],
            [r["metrics"][scorer.label] for r in base],
            full_score=FULL_SCORE,
            **boot,
        )
    return corpus_ci(
        lambda idx: scorer.corpus([other[i] for i in idx]) - scorer.corpus([base[i] for i in idx]), len(base), **boot
    )


def _check_aligned(a: list[dict], b: list[dict], name_a: str, name_b: str) -> None:
    if [r["id"] for r in a] != [r["id"] for r in b]:
        raise ValueError(
            f"records of '{name_a}' and '{name_b}' cover different samples; re-run the eval to complete them"
        )


def repetition_summary(records: list[dict]) -> dict | None:
    """Mean degeneration statistics of one model's generations: distinct-1/2, the longest repeated
    n-gram's length, and the share of outputs that ran into max_new_tokens. None without generations.

    Word and character figures are never averaged together (a distinct-1 of words and one of
    characters are different quantities): `by_unit` holds each unit's means, and the top-level
    figures are those of the unit most outputs were measured in (`unit`)."""
    measured = [r for r in records if isinstance(r.get("repetition"), dict)]
    if not measured:
        return None
    by_unit: dict[str, dict] = {}
    for unit in ("word", "char"):
        stats = [r["repetition"] for r in measured if r["repetition"].get("unit", "word") == unit]
        if stats:
            by_unit[unit] = {
                key: sum(s.get(key, 0.0) for s in stats) / len(stats)
                for key in ("distinct_1", "distinct_2", "longest_repeat_len")
            }
            by_unit[unit]["n"] = len(stats)
    unit = max(by_unit, key=lambda u: (by_unit[u]["n"], u == "word"))
    return {
        **{key: value for key, value in by_unit[unit].items() if key != "n"},
        "unit": unit,
        "by_unit": by_unit,
        "hit_limit_rate": sum(r.get("stop_reason") == "length" for r in measured) / len(measured),
        "n": len(measured),
    }
