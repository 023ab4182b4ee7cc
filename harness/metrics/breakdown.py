"""Subject and category breakdowns of a run whose records carry `subject` (and `category`).

Per column: each subject's n and metric values; each category's, with intervals; the micro average
(over all samples: the headline `metrics`) and the macro averages (the mean of the subjects' values,
and of the categories'), with paired deltas against the base for the macro averages and per category.
A category's value is the mean over its samples (lm-evaluation-harness's size-weighted group score).
A corpus metric (f1) is computed on each group's records; its macro averages and their deltas carry
no interval, since each resample would cost a corpus scoring per group. The breakdown's deltas are
marked improved/regressed as a family of their own, apart from the headline deltas.
Pure (no torch): `harness eval` and `harness rescore` both call `breakdown`.
"""

from __future__ import annotations

import math

import numpy as np

from harness.metrics.aggregate import FULL_SCORE, Scorer, mark_deltas
from harness.metrics.stats import corpus_ci, mean_ci, paired_delta_ci

MACROS = ("macro_subjects", "macro_categories")


def has_subjects(records: dict[str, list[dict]]) -> bool:
    return any(r.get("subject") is not None for recs in records.values() for r in recs)


def breakdown(records: dict[str, list[dict]], scorers: list[Scorer], base: str | None, *bootstrap) -> dict | None:
    """results.json's "breakdown"; None when no record names a subject. `records[column]` lists the
    records in the same sample order for every column (aggregate checks that); `bootstrap` is
    aggregate's (resamples, seed, confidence, correction)."""
    resamples, seed, confidence, correction = bootstrap
    if not has_subjects(records):
        return None
    boot = dict(seed=seed, n_resamples=resamples, confidence=confidence)
    first = next(iter(records.values()))
    groups = _Groups(first)
    columns = {column: _column(groups, recs, scorers, boot) for column, recs in records.items()}
    deltas: dict[str, dict] = {}
    if base is not None and base in records:
        for column, recs in records.items():
            if column != base:
                deltas[column] = _deltas(groups, records[base], recs, scorers, boot)
    # Holm's family: every breakdown delta of the run, each (column, group) one row of metrics.
    family = {(c, g): entries for c, by_group in deltas.items() for g, entries in by_group.items()}
    comparisons = mark_deltas(family, scorers, 1 - confidence, correction)
    out = {
        "subjects": groups.subjects,
        "categories": groups.categories,
        "category_of": groups.category_of,
        "columns": columns,
        "deltas": {
            c: {**{m: d[m] for m in MACROS if m in d}, "categories": _by_category(d)} for c, d in deltas.items()
        },
        "comparisons": comparisons,
    }
    if groups.uncategorized:
        out["uncategorized"] = groups.uncategorized
    return out


class _Groups:
    """Which subject and category each sample belongs to, as indices for numpy."""

    def __init__(self, records: list[dict]):
        subjects = [None if r.get("subject") is None else str(r["subject"]) for r in records]
        self.subjects = sorted({s for s in subjects if s is not None})
        self.category_of = {
            str(r["subject"]): r["category"] for r in records if r.get("subject") is not None and r.get("category")
        }
        categories = [None if s is None else self.category_of.get(s) for s in subjects]
        self.categories = sorted({c for c in categories if c is not None})
        self.subject_index = _index(subjects, self.subjects)
        self.category_index = _index(categories, self.categories)
        self.uncategorized = sum(1 for s, c in zip(subjects, categories) if s is not None and c is None)

    def members(self, by: str, name: str) -> np.ndarray:
        index, names = (
            (self.subject_index, self.subjects) if by == "subject" else (self.category_index, self.categories)
        )
        return np.flatnonzero(index == names.index(name))


def _index(values: list, names: list[str]) -> np.ndarray:
    """Each value's position in `names`, -1 for none."""
    position = {name: n for n, name in enumerate(names)}
    return np.array([position.get(v, -1) if v is not None else -1 for v in values], dtype=np.int64)


def _column(groups: _Groups, recs: list[dict], scorers: list[Scorer], boot: dict) -> dict:
    subjects = {}
    for subject in groups.subjects:
        idx = groups.members("subject", subject)
        subjects[subject] = {"n": len(idx), **{s.label: _value(s, recs, idx) for s in scorers}}
    categories = {}
    for category in groups.categories:
        idx = groups.members("category", category)
        categories[category] = {"n": len(idx), **{s.label: _interval(s, recs, idx, boot) for s in scorers}}
    out = {"subjects": subjects, "categories": categories}
    for macro, index, names in _macros(groups):
        out[macro] = {s.label: _macro_interval(s, recs, index, len(names), boot) for s in scorers}
    return out


def _macros(groups: _Groups):
    yield "macro_subjects", groups.subject_index, groups.subjects
    if groups.categories:
        yield "macro_categories", groups.category_index, groups.categories


def _deltas(groups: _Groups, base: list[dict], other: list[dict], scorers: list[Scorer], boot: dict) -> dict:
    out = {}
    for macro, index, names in _macros(groups):
        out[macro] = {s.label: _macro_delta(s, base, other, index, len(names), boot) for s in scorers}
    for category in groups.categories:
        idx = groups.members("category", category)
        out["category:" + category] = {s.label: _paired(s, base, other, idx, boot) for s in scorers}
    return out


def _by_category(deltas: dict) -> dict:
    return {key.split(":", 1)[1]: entries for key, entries in deltas.items() if key.startswith("category:")}


def _values(scorer: Scorer, recs: list[dict]) -> np.ndarray:
    return np.array([r["metrics"][scorer.label] for r in recs], dtype=np.float64)


def _value(scorer: Scorer, recs: list[dict], idx: np.ndarray) -> float:
    if scorer.per_sample is not None:
        return float(_values(scorer, recs)[idx].mean())
    return float(scorer.corpus([recs[i] for i in idx]))


def _interval(scorer: Scorer, recs: list[dict], idx: np.ndarray, boot: dict) -> dict:
    if scorer.per_sample is not None:
        entry = mean_ci(_values(scorer, recs)[idx], full_score=FULL_SCORE, **boot).to_dict()
    else:
        entry = corpus_ci(lambda rows: scorer.corpus([recs[idx[i]] for i in rows]), len(idx), **boot).to_dict()
    entry.pop("p_value", None)
    return entry


def _paired(scorer: Scorer, base: list[dict], other: list[dict], idx: np.ndarray, boot: dict) -> dict:
    if scorer.per_sample is not None:
        a, b = _values(scorer, other)[idx], _values(scorer, base)[idx]
        return paired_delta_ci(a, b, full_score=FULL_SCORE, **boot).to_dict()
    return corpus_ci(
        lambda rows: scorer.corpus([other[idx[i]] for i in rows]) - scorer.corpus([base[idx[i]] for i in rows]),
        len(idx),
        **boot,
    ).to_dict()


def _group_means(values: np.ndarray, index: np.ndarray, groups: int, rows: np.ndarray) -> float:
    """The mean over groups of each group's mean over the samples at `rows` (a group absent from a
    resample is left out of that resample's mean)."""
    rows = rows[index[rows] >= 0]
    sums = np.bincount(index[rows], weights=values[rows], minlength=groups)
    counts = np.bincount(index[rows], minlength=groups)
    present = counts > 0
    return float((sums[present] / counts[present]).mean()) if present.any() else math.nan


def _macro_interval(scorer: Scorer, recs: list[dict], index: np.ndarray, groups: int, boot: dict) -> dict:
    n = int((index >= 0).sum())
    if scorer.per_sample is None:
        return _point(_corpus_macro(scorer, recs, index, groups), n)
    values = _values(scorer, recs)
    entry = corpus_ci(lambda rows: _group_means(values, index, groups, rows), len(values), **boot).to_dict()
    entry.pop("p_value", None)
    return {**entry, "n": n}


def _macro_delta(
    scorer: Scorer, base: list[dict], other: list[dict], index: np.ndarray, groups: int, boot: dict
) -> dict:
    n = int((index >= 0).sum())
    if scorer.per_sample is None:
        value = _corpus_macro(scorer, other, index, groups) - _corpus_macro(scorer, base, index, groups)
        return _point(value, n)
    a, b = _values(scorer, other), _values(scorer, base)
    entry = corpus_ci(
        lambda rows: _group_means(a, index, groups, rows) - _group_means(b, index, groups, rows), len(a), **boot
    ).to_dict()
    return {**entry, "n": n}


def _corpus_macro(scorer: Scorer, recs: list[dict], index: np.ndarray, groups: int) -> float:
    return float(np.mean([scorer.corpus([recs[i] for i in np.flatnonzero(index == g)]) for g in range(groups)]))


def _point(value: float, n: int) -> dict:
    """A figure without an interval: low and high are absent, not equal to the value."""
    return {"value": value, "n": n, "method": "none", "excludes_zero": False}
