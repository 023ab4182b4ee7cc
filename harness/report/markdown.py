"""A Report as Markdown, for a PR or a model card. Names, paths and labels are untrusted: they are
escaped so that a viewer which renders HTML in Markdown (GitHub does) shows them as text."""

from __future__ import annotations

from harness import __version__
from harness.report.breakdown import breakdown_context
from harness.report.load import Report
from harness.report.rows import train_summary
from harness.report.sweep import sweep_table
from harness.runs.summary import fmt_interval, interval_note, long_prompts_note, version_notes

# Characters that start Markdown syntax (emphasis, code, links, images, tables, escapes), and HTML,
# which viewers such as GitHub's render: untrusted text is escaped so it stays text.
_MD_SPECIAL = set("\\`*[]()|!#~{}")


def md_escape(text) -> str:
    """Untrusted text (names, paths, labels) as inert Markdown: HTML as entities, syntax backslashed."""
    out = []
    for ch in " ".join(str(text).split("\n")).replace("\r", " "):
        if ch in "&<>":
            out.append({"&": "&amp;", "<": "&lt;", ">": "&gt;"}[ch])
        elif ch in _MD_SPECIAL:
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def _md_code(text) -> str:
    """Untrusted text shown as code: an HTML <code> element (a backtick span cannot hold a backtick safely)."""
    return f"<code>{md_escape(text)}</code>"


def render_markdown(report: Report) -> str:
    first = report.first
    ds = first.get("dataset") or {}
    lines = [
        f"## {md_escape(report.suite)} ({md_escape(report.task)}) — {report.n_samples} samples"
        f"{md_escape(long_prompts_note(first.get('long_prompts')))}",
        "",
    ]
    lines.append(
        f"Dataset {_md_code(ds.get('source', '?'))} (sha256 {_md_code(str(ds.get('sha256', '?'))[:12])}), "
        f"{md_escape(interval_note(first.get('bootstrap')))}; Δ is each adapter minus the base of its run, "
        "paired by sample."
    )
    lines.append("")
    lines.extend(_metrics_table(report))
    lines.append("")
    lines.extend(_breakdown_lines(breakdown_context(report)))
    lines.extend(_sweep_lines(report))
    lines.append("Models:")
    lines.extend(_model_line(m) for m in report.models)
    notes = version_notes(report.metric_info)
    rescored = sorted({run.results_file for run in report.runs} - {"results.json"})
    if rescored:
        notes.append("rescored without generating again: " + ", ".join(rescored))
    if notes:
        lines.append("")
        lines.extend(f"<sub>{md_escape(note)}</sub><br>" for note in notes)
    runs = ", ".join(_md_code(r.run_id) for r in report.runs)
    lines.append("")
    lines.append(f"Runs: {runs}; harness {md_escape(first.get('harness_version', __version__))}.")
    return "\n".join(lines) + "\n"


def _metrics_table(report: Report) -> list[str]:
    """One row per model and, under an adapter, its delta against the base."""
    labels = list(report.metric_info)
    arrows = {True: "↑", False: "↓"}
    header = ["model"] + [f"{l} {arrows[bool(report.metric_info[l].get('higher_is_better', True))]}" for l in labels]
    lines = ["| " + " | ".join(md_escape(h) for h in header) + " |", "|" + "---|" * len(header)]
    for m in report.models:
        cells = [_interval_md(m.metrics.get(l) or {}) for l in labels]
        lines.append("| " + " | ".join([f"**{md_escape(m.name)}**"] + cells) + " |")
        if m.delta:
            cells = []
            for l in labels:
                d = m.delta.get(l) or {}
                mark = " ▲" if d.get("improved") else " ▼" if d.get("regressed") else ""
                cells.append(_interval_md(d, signed=True) + mark)
            lines.append("| " + " | ".join([f"Δ {md_escape(m.name)} vs base"] + cells) + " |")
    return lines


def _breakdown_lines(breakdown: dict | None) -> list[str]:
    """By category (then micro and macro) with intervals and Δ vs base; by subject in a collapsed block."""
    if breakdown is None:
        return []
    columns = [f"{m['name']} {l}" for m in breakdown["models"] for l in breakdown["labels"]]
    lines = ["By category (micro: over all samples; macro: mean of the groups' figures):", ""]
    lines += [
        "| " + " | ".join(md_escape(h) for h in ["group", "n", *columns]) + " |",
        "|" + "---|" * (2 + len(columns)),
    ]
    for g in breakdown["groups"]:
        cells = []
        for c in g["cells"]:
            d = c["delta"]
            mark = " ▲" if c["state"] == "improved" else " ▼" if c["state"] == "regressed" else ""
            cells.append(
                _interval_md({**c, "n": None}) + (f"<br>Δ {_interval_md({**d, 'n': None}, True)}{mark}" if d else "")
            )
        name = f"*{md_escape(g['name'])}*" if g["average"] else md_escape(g["name"])
        lines.append("| " + " | ".join([name, md_escape(g["n"]), *cells]) + " |")
    lines += ["", f"<details><summary>By subject ({len(breakdown['subjects'])})</summary>", ""]
    lines += ["| " + " | ".join(md_escape(h) for h in ["subject", "category", "n", *columns]) + " |"]
    lines.append("|" + "---|" * (3 + len(columns)))
    for s in breakdown["subjects"]:
        values = [_interval_md({"value": v}) for v in s["cells"]]
        category = "–" if s["category"] is None else md_escape(s["category"])
        lines.append("| " + " | ".join([md_escape(s["name"]), category, md_escape(s["n"]), *values]) + " |")
    return lines + ["", "</details>", ""]


def _sweep_lines(report: Report) -> list[str]:
    """The training sweep's points as rows, ★ on the best point of each metric; nothing without a sweep."""
    table = sweep_table(report)
    if table is None:
        return []
    arrows = {True: "↑", False: "↓"}
    labels = [f"{l} {arrows[bool(report.metric_info[l].get('higher_is_better', True))]}" for l in table["labels"]]
    header = ["model"] + table["fields"] + labels
    best = "best point" if table["title"] == "Sweep" else "best checkpoint"
    lines = [f"{table['title']} (★ {best}):", "", "| " + " | ".join(md_escape(h) for h in header) + " |"]
    lines.append("|" + "---|" * len(header))
    for row in table["rows"]:
        cells = [_interval_md(c) + (" ★" if c["best"] else "") for c in row["cells"]]
        names = [_md_code(row["name"])] + [md_escape(v) for v in row["at"]]
        lines.append("| " + " | ".join(names + cells) + " |")
    return lines + [""]


def _model_line(m) -> str:
    info = m.info
    if m.kind == "base":
        quantization = info.get("quantization")
        mode = f", {md_escape(quantization.get('mode'))}" if isinstance(quantization, dict) else ""
        return f"- {_md_code(m.name)}: base {_md_code(info.get('ref', '?'))}" + mode
    if m.kind == "model":
        return f"- {_md_code(m.name)}: model {_md_code(info.get('path', '?'))} (sha256 {_md_code(str(info.get('sha256', '?'))[:12])})"
    t = train_summary(info)
    extra = f"; trained {md_escape(t['steps'])} steps on {_md_code(t['data'])}" if t and t.get("steps") else ""
    return (
        f"- {_md_code(m.name)}: adapter {_md_code(info.get('path', '?'))} "
        f"(sha256 {_md_code(str(info.get('sha256', '?'))[:12])}){extra}"
    )


def _interval_md(entry: dict, signed: bool = False) -> str:
    return fmt_interval(entry, signed, missing="–")
