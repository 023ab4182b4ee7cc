"""The sample view's data: every sample's prompt, references and each model's answer and scores,
with the prompts' paragraphs interned once (KorQuAD repeats each context for several questions)."""

from __future__ import annotations

from harness.report.charts import color
from harness.report.load import Report


def primary_metric(report: Report) -> str | None:
    """The per-sample metric the sample view sorts by: the one with the most distinct values."""
    labels = [label for label, info in report.metric_info.items() if info.get("kind") == "per_sample"]
    if not labels:
        return None
    records = report.models[0].records

    def spread(label):
        return len({(r.get("metrics") or {}).get(label) for r in records})

    return max(labels, key=lambda label: (spread(label), -labels.index(label)))


def is_generative(report: Report) -> bool:
    return any("output" in r or "prediction" in r for m in report.models for r in m.records[:5])


def sample_data(report: Report) -> dict:
    """Everything the sample view needs, once: prompts split into paragraphs interned in a
    string table (KorQuAD repeats each context for several questions), then per model the
    prediction and per-sample metrics in sample order."""
    generative = is_generative(report)
    per_sample = [l for l, i in report.metric_info.items() if i.get("kind") == "per_sample"]
    by_model = [{str(r.get("id")): r for r in m.records} for m in report.models]
    strings: list[str] = []
    index: dict[str, int] = {}

    def intern(text: str) -> int:
        if text not in index:
            index[text] = len(strings)
            strings.append(text)
        return index[text]

    samples = []
    for sid in report.sample_ids:
        first = next(recs[sid] for recs in by_model if sid in recs)
        prompt = str(first.get("prompt", ""))
        sample = {
            "id": sid,
            "p": [intern(part) for part in prompt.split("\n\n")],
            "r": [str(x) for x in first.get("references") or []],
        }
        if generative:
            sample["o"] = [_text(recs.get(sid), "prediction") for recs in by_model]
            sample["s"] = [[_score(recs.get(sid), l) for l in per_sample] for recs in by_model]
            if isinstance(first.get("choices"), list):
                sample.update(choice_data(first, [recs.get(sid) for recs in by_model]))
        else:
            sample["nll"] = [_field(recs.get(sid), "nll") for recs in by_model]
            sample["tok"] = [_field(recs.get(sid), "tokens") for recs in by_model]
            sample["bytes"] = _field(first, "bytes")
        samples.append(sample)
    base = report.base
    return {
        "kind": "generative" if generative else "perplexity",
        "models": [{"name": m.name, "kind": m.kind, "color": color(i)} for i, m in enumerate(report.models)],
        "base": report.models.index(base) if base else None,
        "metrics": per_sample,
        "higher": [bool(report.metric_info[l].get("higher_is_better", True)) for l in per_sample],
        "primary": per_sample.index(primary_metric(report)) if per_sample else None,
        "strings": strings,
        "samples": samples,
    }


def choice_data(first: dict, records: list[dict | None]) -> dict:
    """A choice sample's choices ("c"), gold indices ("g"), subject ("sub"), and per model each choice's
    log-likelihood ("ll") and its pick by log-likelihood ("pk") and per character ("pn"), as scored."""
    from harness.metrics.choice import prediction  # numpy: only when a report has choice records

    choices = [str(c) for c in first["choices"]]
    out = {"c": choices, "g": [g for g in first.get("gold") or [] if isinstance(g, int)], "ll": [], "pk": [], "pn": []}
    if first.get("subject") is not None:
        out["sub"] = str(first["subject"])
    for record in records:
        lls = record.get("loglikelihoods") if record else None
        valid = isinstance(lls, list) and len(lls) == len(choices)
        lls = [x if isinstance(x, (int, float)) and not isinstance(x, bool) else float("nan") for x in lls or []]
        out["ll"].append(lls if valid else None)
        out["pk"].append(prediction(lls, choices) if valid else None)
        out["pn"].append(prediction(lls, choices, normalized=True) if valid else None)
    return out


def _text(record, key):
    if record is None:
        return None
    value = record.get(key, record.get("output"))
    return None if value is None else str(value)


def _score(record, label):
    if record is None:
        return None
    value = (record.get("metrics") or {}).get(label)
    return round(float(value), 4) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _field(record, key):
    if record is None or record.get(key) is None:
        return None
    return record[key]
