"""A suite's generation_grid: every model × variant is a column in results.json (records, metrics,
repetition means, deltas against base at the first grid value) and in the report."""

from __future__ import annotations

import json

from eval_helpers import ADAPTER_NAME, quiet


def test_suite_grid_gives_model_variant_columns(gen_adapter, suites_dir, tmp_path):
    from harness.config import SuiteConfig, load_config
    from harness.evaluate.run import run_eval
    from harness.report import load_report, render_html

    source = suites_dir / "korquad_sample.yaml"
    suite = load_config(
        SuiteConfig,
        source,
        {
            "dataset.limit": 4,
            "generation.max_new_tokens": 12,
            "batch_size": 4,
            "generation_grid": {"max_new_tokens": [12, 6]},
        },
    )
    suite.models.adapters = {ADAPTER_NAME: str(gen_adapter)}
    result = run_eval(suite, str(source), out_root=tmp_path, run_id="grid", log=quiet, progress_bars=False)
    results = json.loads((result.run_dir / "results.json").read_text(encoding="utf-8"))
    columns = [f"{m}@max_new_tokens={v}" for m in ("base", ADAPTER_NAME) for v in (12, 6)]
    assert list(results["metrics"]) == columns
    assert set(results["deltas"]) == set(columns[1:])  # all against base at the first grid value
    assert [(m["name"], m.get("model"), m.get("variant")) for m in results["models"]] == [
        (c, c.split("@")[0], {"max_new_tokens": int(c.rsplit("=", 1)[1])}) for c in columns
    ]
    assert results["generation_grid"] == {"max_new_tokens": [12, 6]}
    assert results["generation"]["max_new_tokens"] == 12
    for column in columns:
        records = [
            json.loads(line) for line in (result.run_dir / "records" / f"{column}.jsonl").read_text().splitlines()
        ]
        assert len(records) == 4
        rep = results["repetition"][column]
        assert set(rep) >= {"distinct_1", "distinct_2", "longest_repeat_len", "hit_limit_rate"}
        expected = sum(r["stop_reason"] == "length" for r in records) / 4
        assert rep["hit_limit_rate"] == expected
        assert rep["distinct_1"] == round(sum(r["repetition"]["distinct_1"] for r in records) / 4, 6)
    # each column ran with its own settings
    outputs = {
        c: [json.loads(l)["output"] for l in (result.run_dir / "records" / f"{c}.jsonl").read_text().splitlines()]
        for c in columns
    }
    assert outputs[columns[0]] != outputs[columns[1]]
    assert all(a.startswith(b) for a, b in zip(outputs[columns[0]], outputs[columns[1]]))

    html = render_html(load_report([result.run_dir]))
    assert html.count('<tr class="model-row"') == 4 and html.count('<tr class="delta-row"') == 3
    assert html.count('<tr class="repetition-row"') == 4 and "hit token limit" in html


def test_suite_without_grid_keeps_its_run_id():
    """An empty generation_grid, the engine and verify are not part of the run id (old runs still resume)."""
    from harness.config import SuiteConfig, validate
    from harness.data.readers import Dataset
    from harness.evaluate.plan import run_id_for

    suite = validate(SuiteConfig, {"name": "s", "task": "qa"}, "s.yaml")
    dataset = Dataset(source="x", path="x", format="jsonl", sha256="0" * 64, examples=[])
    plain = run_id_for(suite, dataset, {})
    gridded = validate(SuiteConfig, {"name": "s", "task": "qa", "generation_grid": {"top_k": [1, 2]}}, "s.yaml")
    assert run_id_for(gridded, dataset, {}) != plain
    dumped = suite.model_dump(mode="json", exclude={"models", "generation_grid", "engine", "verify"})
    # Settings added later are left out at their defaults, so the formula, and old ids, hold.
    del dumped["prompt"]["overflow"], dumped["prompt"]["truncate_field"], dumped["bootstrap"]["correction"]
    del dumped["perplexity"]["source_field"], dumped["filters"], dumped["choice"]
    for key in ("sample", "name", "data_files", "revision", "where"):
        del dumped["dataset"][key]
    from harness.runs.store import content_key

    assert plain == f"s-{content_key(dumped, dataset.sha256, {})[:10]}"
