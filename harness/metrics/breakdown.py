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

import numpy as np

from harness.metrics.aggregate import Scorer, interval, mark_deltas, paired_delta
from harness.metrics.stats import bootstrap_indices, percentile_interval

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
    groups = _Groups(next(iter(records.values())))
    values = {(c, s.label): _values(s, recs) for c, recs in records.items() for s in scorers if s.per_sample}
    macros = _Macros(groups, values, boot)
    columns = {c: _column(groups, macros, c, recs, scorers, boot) for c, recs in records.items()}
    deltas: dict[str, dict] = {}
    if base is not None and base in records:
        for c, recs in records.items():
            if c != base:
                deltas[c] = _deltas(groups, macros, (base, c), (records[base], recs), scorers, boot)
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
        self.index = {"subject": _index(subjects, self.subjects), "category": _index(categories, self.categories)}
        self.uncategorized = sum(1 for s, c in zip(subjects, categories) if s is not None and c is None)
        self.macros = {"macro_subjects": ("subject", len(self.subjects))}
        if self.categories:
            self.macros["macro_categories"] = ("category", len(self.categories))

    def members(self, by: str, name: str) -> np.ndarray:
        names = self.subjects if by == "subject" else self.categories
        return np.flatnonzero(self.index[by] == names.index(name))


def _index(values: list, names: list[str]) -> np.ndarray:
    """Each value's position in `names`, -1 for none."""
    position = {name: n for n, name in enumerate(names)}
    return np.array([position.get(v, -1) if v is not None else -1 for v in values], dtype=np.int64)


class _Macros:
    """Every macro average of every per-sample metric of every column, on all samples and on each
    bootstrap resample; the resamples are drawn once, as every harness bootstrap draws them (the
    same seed gives the same index sets), so a delta's replicates pair the columns'."""

    def __init__(self, groups: _Groups, values: dict[tuple, np.ndarray], boot: dict):
        n = len(groups.index["subject"])
        self.confidence = boot["confidence"]
        self.n = {m: int((groups.index[by] >= 0).sum()) for m, (by, _) in groups.macros.items()}
        self.value = {
            (key, m): _GroupRows(groups, m, np.arange(n)[None]).means(values[key])[0]
            for key in values
            for m in groups.macros
        }
        blocks: dict[tuple, list] = {(key, m): [] for key in values for m in groups.macros}
        for block in bootstrap_indices(n, seed=boot["seed"], n_resamples=boot["n_resamples"]) if n > 1 else []:
            for m in groups.macros:
                rows = _GroupRows(groups, m, block)
                for key, v in values.items():
                    blocks[key, m].append(rows.means(v))
        self.replicates = {k: np.concatenate(b) for k, b in blocks.items() if b}

    def interval(self, key: tuple, macro: str) -> dict:
        value, n = float(self.value[key, macro]), self.n[macro]
        if (key, macro) not in self.replicates:
            return _point(value, n)
        entry = percentile_interval(value, self.replicates[key, macro], n, self.confidence).to_dict()
        entry.pop("p_value", None)
        return entry

    def delta(self, base: tuple, other: tuple, macro: str) -> dict:
        value, n = float(self.value[other, macro] - self.value[base, macro]), self.n[macro]
        if (base, macro) not in self.replicates:
            return _point(value, n)
        stats = self.replicates[other, macro] - self.replicates[base, macro]
        return percentile_interval(value, stats, n, self.confidence).to_dict()


class _GroupRows:
    """Rows of sample indices (resamples × n) sorted into one macro's groups, for `means`."""

    def __init__(self, groups: _Groups, macro: str, rows: np.ndarray):
        by, self.count = groups.macros[macro]
        g = groups.index[by][rows]
        self.keep = g >= 0
        self.rows = rows
        self.flat = (np.arange(len(rows))[:, None] * self.count + g)[self.keep]
        self.shape = (len(rows), self.count)
        self.counts = np.bincount(self.flat, minlength=self.shape[0] * self.count).reshape(self.shape)

    def means(self, values: np.ndarray) -> np.ndarray:
        """Per row: the mean over groups of each group's mean over the row's samples; a group absent
        from a resample is left out of that resample's mean."""
        weights = values[self.rows][self.keep]
        sums = np.bincount(self.flat, weights=weights, minlength=self.shape[0] * self.count).reshape(self.shape)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.nanmean(np.where(self.counts > 0, sums / self.counts, np.nan), axis=1)


def _column(groups: _Groups, macros: _Macros, column: str, recs: list[dict], scorers: list[Scorer], boot) -> dict:
    subjects = {}
    for subject in groups.subjects:
        idx = groups.members("subject", subject)
        subjects[subject] = {"n": len(idx), **{s.label: _value(s, recs, idx) for s in scorers}}
    categories = {}
    for category in groups.categories:
        idx = groups.members("category", category)
        categories[category] = {"n": len(idx), **{s.label: _interval(s, recs, idx, boot) for s in scorers}}
    out = {"subjects": subjects, "categories": categories}
    for macro, (by, count) in groups.macros.items():
        out[macro] = {
            s.label: macros.interval((column, s.label), macro)
            if s.per_sample
            else _point(_corpus_macro(s, recs, groups, by, count), macros.n[macro])
            for s in scorers
        }
    return out


def _deltas(groups: _Groups, macros: _Macros, names: tuple, recs: tuple, scorers: list[Scorer], boot) -> dict:
    (base, other), (base_recs, other_recs) = names, recs
    out = {}
    for macro, (by, count) in groups.macros.items():
        out[macro] = {
            s.label: macros.delta((base, s.label), (other, s.label), macro)
            if s.per_sample
            else _point(
                _corpus_macro(s, other_recs, groups, by, count) - _corpus_macro(s, base_recs, groups, by, count),
                macros.n[macro],
            )
            for s in scorers
        }
    for category in groups.categories:
        idx = groups.members("category", category)
        out["category:" + category] = {s.label: _paired(s, base_recs, other_recs, idx, boot) for s in scorers}
    return out


def _by_category(deltas: dict) -> dict:
    return {key.split(":", 1)[1]: entries for key, entries in deltas.items() if key.startswith("category:")}


def _values(scorer: Scorer, recs: list[dict]) -> np.ndarray:
    return np.array([r["metrics"][scorer.label] for r in recs], dtype=np.float64)


def _value(scorer: Scorer, recs: list[dict], idx: np.ndarray) -> float:
    if scorer.per_sample is not None:
        return float(np.mean([recs[i]["metrics"][scorer.label] for i in idx]))
    return float(scorer.corpus([recs[i] for i in idx]))


def _interval(scorer: Scorer, recs: list[dict], idx: np.ndarray, boot: dict) -> dict:
    entry = interval(scorer, [recs[i] for i in idx], boot).to_dict()
    entry.pop("p_value", None)
    return entry


def _paired(scorer: Scorer, base: list[dict], other: list[dict], idx: np.ndarray, boot: dict) -> dict:
    return paired_delta(scorer, [base[i] for i in idx], [other[i] for i in idx], boot).to_dict()


def _corpus_macro(scorer: Scorer, recs: list[dict], groups: _Groups, by: str, count: int) -> float:
    index = groups.index[by]
    return float(np.mean([scorer.corpus([recs[i] for i in np.flatnonzero(index == g)]) for g in range(count)]))


def _point(value: float, n: int) -> dict:
    """A figure without an interval: low and high are absent, not equal to the value."""
    return {"value": value, "n": n, "method": "none", "excludes_zero": False}
