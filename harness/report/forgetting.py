"""The forgetting view of runs on several suites: for each adapter (or full model), what it gained on the
suite it was trained for (the target: every metric) beside what changed on each other suite (its headline,
i.e. first, metric). Every figure is a delta its own run computed against its base (paired by sample, with
its interval and ▲/▼ after that run's correction, Holm by default); nothing is recomputed here. Shown only
when the suites share the base and at least one adapter was evaluated on the target and another suite.

Works on results.json documents (`from_results`: the summary `harness eval` prints after several suites)
and on a multi-suite report's merged runs (`from_report`) alike."""

from __future__ import annotations

from dataclasses import dataclass

from harness.errors import HarnessError
from harness.report.charts import delta_state
from harness.report.markdown import md_escape
from harness.runs.tables import format_table

MARKS = {"improved": " ▲", "regressed": " ▼"}


@dataclass
class SuiteDeltas:
    """One suite's deltas against its base, by column."""

    suite: str
    metric_info: dict
    base: dict | None  # the base column's description (results.json "models" entry)
    columns: dict[str, tuple[dict, dict]]  # non-base column -> (its description, its deltas by metric)


def from_results(results: dict) -> SuiteDeltas:
    infos = {m.get("name"): m for m in results.get("models") or [] if isinstance(m, dict)}
    described = {name: infos.get(name) or {"name": name, "kind": _kind(name)} for name in results["metrics"]}
    deltas = results.get("deltas") or {}
    return SuiteDeltas(
        suite=str(results["suite"]),
        metric_info=results["metric_info"],
        base=next((info for info in described.values() if info.get("kind", "adapter") == "base"), None),
        columns={
            name: (info, deltas[name])
            for name, info in described.items()
            if info.get("kind", "adapter") != "base" and deltas.get(name)
        },
    )


def from_report(report) -> SuiteDeltas:
    """A suite of a multi-suite report (harness.report.load.Report)."""
    base = report.base
    return SuiteDeltas(
        suite=report.suite,
        metric_info=report.metric_info,
        base=base.info if base else None,
        columns={m.name: (m.info, m.delta) for m in report.models if m.kind != "base" and m.delta},
    )


def _kind(name: str) -> str:
    return "base" if name == "base" else "adapter"


def target_index(suites: list[str], target: str | None) -> int:
    """Which suite is the target: the one named (--target), else the first."""
    if target is None:
        return 0
    if target not in suites:
        raise HarnessError(f"--target {target}: no such suite among the runs ({', '.join(suites)}); name one of them")
    return suites.index(target)


def forgetting_table(suites: list[SuiteDeltas], target: int = 0) -> tuple[dict | None, str | None]:
    """(the table, None), or (None, why there is none) for runs that cannot be compared this way."""
    if len(suites) < 2:
        return None, None
    goal = suites[target]
    if not goal.columns:  # the base alone: nothing was fine-tuned
        return None, None
    ordered = [goal] + [s for i, s in enumerate(suites) if i != target]
    if missing := next((s for s in ordered if s.base is None), None):
        return None, f"suite {missing.suite} has no base column (evaluated with --no-base)"
    if other := next((s for s in ordered[1:] if not _same(s.base, goal.base)), None):
        return None, f"the base of suite {other.suite} is not that of {goal.suite}"
    groups = [_group(s, s is goal) for s in ordered if s.metric_info]
    by_suite = {s.suite: s for s in ordered}
    rows = []
    for name, (info, _) in goal.columns.items():
        cells = [[_cell(by_suite[g["suite"]], name, info, label) for label, _ in g["labels"]] for g in groups]
        if any(c["delta"] for group in cells[1:] for c in group):
            rows.append({"name": name, "kind": info.get("kind", "adapter"), "groups": cells})
    if not rows:
        return (
            None,
            f"no adapter of suite {goal.suite} was evaluated on the other suites with the same name and weights",
        )
    return {"target": goal.suite, "groups": groups, "rows": rows}, None


def _group(suite: SuiteDeltas, target: bool) -> dict:
    """A suite's columns of the table: the target's every metric, another suite's headline (first) metric."""
    labels = list(suite.metric_info) if target else list(suite.metric_info)[:1]
    return {
        "suite": suite.suite,
        "target": target,
        "labels": [(label, bool(suite.metric_info[label].get("higher_is_better", True))) for label in labels],
    }


def _same(a: dict, b: dict) -> bool:
    """The same model: by content where both runs recorded it, else by reference."""
    if a.get("sha256") and b.get("sha256"):
        return a["sha256"] == b["sha256"]
    return a.get("ref") == b.get("ref")


def _cell(suite: SuiteDeltas, name: str, info: dict, label: str) -> dict:
    """The column's delta on `label` in `suite` (None where no column of that name holds the same weights)."""
    found = suite.columns.get(name)
    delta = found[1].get(label) if found and _same_weights(found[0], info) else None
    if delta is not None and delta.get("value") is None:
        delta = None
    return {"suite": suite.suite, "label": label, "delta": delta, "state": delta_state(delta)}


def _same_weights(a: dict, b: dict) -> bool:
    return not (a.get("sha256") and b.get("sha256")) or a["sha256"] == b["sha256"]


def forgetting_text(table: dict) -> str:
    """The table in compact terminal form, a line per suite and metric and a column per model (there are
    fewer models than suites): deltas and marks, the intervals left to each suite's table."""
    header = ["Δ vs base", "metric"] + [row["name"] for row in table["rows"]]
    lines = [
        (
            group["suite"] + (" (target)" if group["target"] else ""),
            label,
            *(_text(row["groups"][g][i], interval=False) for row in table["rows"]),
        )
        for g, group in enumerate(table["groups"])
        for i, (label, _) in enumerate(group["labels"])
    ]
    title = (
        f"forgetting: gained on {table['target']} (target) beside changed on the other suites; "
        "▲/▼ as each suite's table says (its intervals there)"
    )
    return title + "\n" + format_table(header, lines)


def _text(cell: dict, interval: bool = True) -> str:
    d = cell["delta"]
    if d is None:
        return "–"
    text = f"{d['value']:+.2f}"
    if interval and d.get("low") is not None and d.get("high") is not None:
        text += f" [{d['low']:+.2f}, {d['high']:+.2f}]"
    return text + MARKS.get(cell["state"], "")


def forgetting_markdown(table: dict) -> list[str]:
    """The table as Markdown lines, names escaped."""
    arrows = {True: "↑", False: "↓"}
    header = ["model"] + [
        f"{md_escape(g['suite'])} {md_escape(label)} {arrows[higher]}" + (" (target)" if g["target"] else "")
        for g in table["groups"]
        for label, higher in g["labels"]
    ]
    lines = [
        f"## Did it forget? Gained on {md_escape(table['target'])}, changed on the other suites",
        "",
        "Δ: each model minus the base on the same samples, with its interval; ▲/▼ significant as each "
        "suite's table below says; – not evaluated there.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for row in table["rows"]:
        cells = [_text(c) for group in row["groups"] for c in group]
        lines.append("| " + " | ".join([f"**{md_escape(row['name'])}**"] + cells) + " |")
    return lines
