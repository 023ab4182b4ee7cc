"""A finished run, tampered with or damaged, then read by `harness report` and `harness rescore`: a
damaged file is one line naming it; what is still valid (a torn last record, non-finite numbers,
odd Unicode in the records) reports and rescores."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from fault_helpers import ADAPTER, assert_ok, assert_one_line_error, read_records


def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps(change(data) if callable(change) else change, allow_nan=True), encoding="utf-8")


def _set(path: list, value):
    def change(data):
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        return data

    return change


def _records(run: Path, name: str = ADAPTER) -> Path:
    return run / "records" / f"{name}.jsonl"


def _raw(run: Path, file: str, data: bytes) -> None:
    (run / file).write_bytes(data)


# id: (how to damage the copy, commands it breaks, needles)
DAMAGE = {
    "results not JSON": (lambda r: _raw(r, "results.json", b"{"), ["results.json", "unreadable"]),
    "results not UTF-8": (lambda r: _raw(r, "results.json", b'{"suite": "\xff"}'), ["results.json", "unreadable"]),
    "results empty": (lambda r: _raw(r, "results.json", b""), ["results.json", "unreadable"]),
    "results nested too deep": (
        lambda r: _raw(r, "results.json", b"[" * 100_000 + b"]" * 100_000),
        ["results.json", "unreadable"],
    ),
    "results a list": (lambda r: _edit_json(r / "results.json", []), ["results.json", "JSON object"]),
    "results without metrics": (
        lambda r: _edit_json(r / "results.json", lambda d: {k: v for k, v in d.items() if k != "metrics"}),
        ["results.json", "'metrics'"],
    ),
    "results metrics a string": (
        lambda r: _edit_json(r / "results.json", _set(["metrics"], "x")),
        ["results.json", "'metrics'"],
    ),
    "results metric value a string": (
        lambda r: _edit_json(r / "results.json", _set(["metrics", "base", "f1", "value"], "high")),
        ["results.json", "metrics.base.f1"],
    ),
    "results metric_info a list": (
        lambda r: _edit_json(r / "results.json", _set(["metric_info"], [1])),
        ["results.json", "'metric_info'"],
    ),
    "results deltas a list": (
        lambda r: _edit_json(r / "results.json", _set(["deltas"], [1])),
        ["results.json", "'deltas'"],
    ),
    "results models a string": (
        lambda r: _edit_json(r / "results.json", _set(["models"], "x")),
        ["results.json", "'models'"],
    ),
    "results suite a number": (
        lambda r: _edit_json(r / "results.json", _set(["suite"], 5)),
        ["results.json", "'suite'"],
    ),
    "records missing": (lambda r: _records(r).unlink(), [f"{ADAPTER}.jsonl", "no records"]),
    "record line garbage inside": (
        lambda r: _records(r).write_bytes(b"garbage\n" + _records(r).read_bytes()),
        [f"{ADAPTER}.jsonl line 1", "not a JSON record"],
    ),
    "record line not UTF-8 inside": (
        lambda r: _records(r).write_bytes(b'{"id": "\xff"}\n' + _records(r).read_bytes()),
        [f"{ADAPTER}.jsonl line 1"],
    ),
    "record a list inside": (
        lambda r: _records(r).write_bytes(b"[1, 2]\n" + _records(r).read_bytes()),
        [f"{ADAPTER}.jsonl line 1"],
    ),
}
RESCORE_ONLY = {
    "config not JSON": (lambda r: _raw(r, "config.json", b"{"), ["config.json", "unreadable"]),
    "config a list": (lambda r: _edit_json(r / "config.json", []), ["config.json", "'suite'"]),
    "config suite unknown task": (
        lambda r: _edit_json(r / "config.json", _set(["suite", "task"], "qa2")),
        ["config.json", "qa2"],
    ),
    "--set resamples absurd": (lambda r: None, ["bootstrap.resamples"]),
    "config suite bad field": (
        lambda r: _edit_json(r / "config.json", _set(["suite", "bootstrap", "resamples"], -1)),
        ["config.json", "bootstrap.resamples"],
    ),
    # The metrics score the raw output (re-extracted, so a rescore can change the filters), or, in a
    # record written without one, the prediction it holds: a record with neither cannot be scored.
    "record without output or prediction": (
        lambda r: _records(r).write_text(
            "\n".join(
                json.dumps({k: v for k, v in rec.items() if k not in ("output", "prediction")})
                for rec in read_records(_records(r))
            )
            + "\n",
            encoding="utf-8",
        ),
        [f"{ADAPTER}.jsonl", "'prediction'"],
    ),
    "record without id": (
        lambda r: _records(r).write_text(
            "\n".join(json.dumps({k: v for k, v in rec.items() if k != "id"}) for rec in read_records(_records(r)))
            + "\n",
            encoding="utf-8",
        ),
        [f"{ADAPTER}.jsonl", "'id'"],
    ),
    "record output a number": (
        lambda r: _records(r).write_text(
            "\n".join(json.dumps({**rec, "output": 5}) for rec in read_records(_records(r))) + "\n", encoding="utf-8"
        ),
        [f"{ADAPTER}.jsonl"],
    ),
}
CASES = (
    [(c, "report") for c in DAMAGE]
    + [(c, "rescore") for c in DAMAGE if not c.startswith("results")]
    + [(c, "rescore") for c in RESCORE_ONLY]
)


@pytest.mark.parametrize("case,command", CASES, ids=[f"{cmd}: {c}" for c, cmd in CASES])
def test_damaged_run_is_one_line(case, command, run_copy, run_cli):
    damage, needles = {**DAMAGE, **RESCORE_ONLY}[case]
    damage(run_copy)
    extra = ["--set", "bootstrap.resamples=100000000000"] if case == "--set resamples absurd" else []
    code, _out, err = run_cli([command, run_copy, *extra])
    assert_one_line_error(code, err, command, needles)


def test_rescore_with_results_json_damaged_still_rescores_from_records(run_copy, run_cli):
    """rescore reads config.json and the records; a damaged results.json only loses its run fields."""
    _raw(run_copy, "results.json", b"[1]")
    code, _out, err = run_cli(["rescore", run_copy])
    assert_one_line_error(code, err, "rescore", ["results.json", "JSON object"])


# --- valid, however odd ---------------------------------------------------------------------------


def _torn_inside_a_character(run: Path) -> None:
    with _records(run).open("ab") as fh:
        fh.write('{"id": "한국'.encode()[:-1])  # cut inside the last character's bytes


def _nan_metrics(run: Path) -> None:
    def change(data):
        data["metrics"][ADAPTER]["f1"] = {"value": math.nan, "low": -math.inf, "high": math.inf}
        data["deltas"][ADAPTER]["f1"] = {"value": math.nan, "low": math.nan, "high": math.nan}
        return data

    _edit_json(run / "results.json", change)
    recs = read_records(_records(run))
    recs[0]["metrics"]["f1"] = math.nan
    recs[1]["metrics"]["f1"] = math.inf
    _records(run).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs), encoding="utf-8")


def _odd_unicode_outputs(run: Path) -> None:
    recs = read_records(_records(run))
    odd = [
        "line\u2028sep",
        "para\u2029sep",
        "next\u0085line",
        "nul\x00byte",
        "\ud800lone",
        "",
        "x" * 100_000,
        "<script>alert(1)</script>",
    ]
    for r, text in zip(recs, odd):
        r["output"] = r["prediction"] = text
    _records(run).write_text("".join(json.dumps(r, ensure_ascii=True) + "\n" for r in recs), encoding="utf-8")


VALID = {
    "torn last record": (lambda r: _records(r).open("a").write('{"id": "torn'), "incomplete"),
    "torn inside a UTF-8 character": (_torn_inside_a_character, "incomplete"),
    "non-finite metrics": (_nan_metrics, None),
    "odd Unicode outputs": (_odd_unicode_outputs, None),
    "blank lines between records": (
        lambda r: _records(r).write_text(
            _records(r).read_text(encoding="utf-8").replace("\n", "\n\n\n"), encoding="utf-8"
        ),
        None,
    ),
    "CRLF line ends": (lambda r: _records(r).write_bytes(_records(r).read_bytes().replace(b"\n", b"\r\n")), None),
}


@pytest.mark.parametrize("case", list(VALID), ids=list(VALID))
@pytest.mark.parametrize("command", ["report", "rescore"])
def test_odd_but_valid_run_reports_and_rescores(case, command, run_copy, run_cli, workdir):
    change, note = VALID[case]
    change(run_copy)
    argv = [command, run_copy] + (["--md", "r.md", "-o", "r.html"] if command == "report" else [])
    code, out, err = run_cli(argv)
    assert_ok(code, err)
    if note:  # report notes on stderr; rescore with its other notes, above its table
        assert note in err + out and "left out" in err + out
    else:
        assert not err.strip(), err
    if command == "report":
        html, md = ((workdir / "r.html").read_text(encoding="utf-8"), (workdir / "r.md").read_text(encoding="utf-8"))
        assert "<script>alert" not in html and "<script>alert" not in md
        if case == "non-finite metrics":
            assert "nan" in out and "nan" in md and ">nan <" in html.replace("</td>", "<")


def test_non_finite_metrics_survive_a_rescore_file(run_copy, run_cli):
    """A rescore of records holding NaN writes JSON that report reads back."""
    recs = read_records(_records(run_copy))
    for r in recs:
        r["prediction"] = ""
    _records(run_copy).write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    code, _out, err = run_cli(["rescore", run_copy, "-o", "results-x.json"])
    assert_ok(code, err)
    code, _out, err = run_cli(["report", run_copy, "--results", "results-x.json", "-o", "x.html"])
    assert_ok(code, err)


def test_records_reach_the_disk_in_bulk_not_one_sync_each(tmp_path, monkeypatch):
    """A burst of records (a GPU batch of choice samples) costs a sync a second, not one per record;
    every record is in the file as soon as it is appended, and close syncs the rest."""
    import os

    from harness.runs import jsonl

    syncs = []
    real = os.fsync
    monkeypatch.setattr(jsonl.os, "fsync", lambda fd: (syncs.append(fd), real(fd)))
    path = tmp_path / "records.jsonl"
    append = jsonl.RecordAppender(path)
    for n in range(200):
        append({"id": str(n)})
        assert path.read_bytes().count(b"\n") == n + 1
    assert len(syncs) <= 2
    append.close()
    assert len(syncs) <= 3 and jsonl.read_jsonl_records(path)[0][-1] == {"id": "199"}
