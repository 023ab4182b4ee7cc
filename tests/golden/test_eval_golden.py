"""Golden outputs of `harness eval` on the tiny base model (4-bit NF4 on CPU, greedy, fixed seeds).

The tiny model's weights are built deterministically from a seed, so the base model's
predictions and aggregate metrics are pinned here in tests/golden/*.json. Adapter outputs are
not pinned: training is not guaranteed to be bit-stable across machines.

    Re-bless (after an intended change, then review `git diff tests/golden`):
        HARNESS_BLESS=1 pytest tests/golden

Runs use one torch thread (the same reduction order on every machine). Without HARNESS_BLESS=1 a mismatch fails with a list of every difference. Predictions (and
token counts) must match exactly; metric values (value/low/high) and per-document NLL within
1e-6 (absolute or relative).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

GOLDEN_DIR = Path(__file__).resolve().parent
SUITES = GOLDEN_DIR.parents[1] / "suites"
BLESS = os.environ.get("HARNESS_BLESS") == "1"
TOLERANCE = 1e-6

# golden file stem → (suite file, overrides). batch_size is fixed so the goldens never
# depend on the hardware-derived default.
CASES = {
    # The plain path (4-bit base, transformers' generate) ...
    "korquad_sample_base": (
        "korquad_sample.yaml",
        {"dataset.limit": 12, "generation.max_new_tokens": 16, "batch_size": 4, "engine": "plain"},
    ),
    "summarization_ko_base": (
        "summarization_ko.yaml",
        {"dataset.limit": 6, "generation.max_new_tokens": 16, "batch_size": 4, "engine": "plain"},
    ),
    "perplexity_ko_base": ("perplexity_ko.yaml", {"dataset.limit": 4, "engine": "plain"}),
    # ... and the fast one (dequantized weights, static-cache decoding, batched windows).
    "korquad_sample_fast": (
        "korquad_sample.yaml",
        {"dataset.limit": 12, "generation.max_new_tokens": 16, "batch_size": 4, "engine": "fast"},
    ),
    "perplexity_ko_fast": ("perplexity_ko.yaml", {"dataset.limit": 4, "batch_size": 3, "engine": "fast"}),
}


def snapshot(results: dict, records: list[dict], suite: str, overrides: dict) -> dict:
    """What is pinned: ids, predictions (or per-document NLL), aggregate metrics."""
    snap = {
        "suite": suite,
        "overrides": overrides,
        "task": results["task"],
        "n_samples": results["n_samples"],
        "dataset_sha256": results["dataset"]["sha256"],
        "ids": [r["id"] for r in records],
    }
    if results["task"] == "perplexity":
        snap["documents"] = {r["id"]: {"nll": r["nll"], "tokens": r["tokens"], "bytes": r["bytes"]} for r in records}
    else:
        snap["predictions"] = {r["id"]: r["prediction"] for r in records}
        snap["generated_tokens"] = {r["id"]: r["generated_tokens"] for r in records}
        snap["stop_reasons"] = {r["id"]: r["stop_reason"] for r in records}
    snap["metrics"] = results["metrics"]
    return snap


def differences(golden, actual, path: str = "") -> list[str]:
    """Every difference between two JSON trees: floats within TOLERANCE, everything else exact."""
    if isinstance(golden, dict) and isinstance(actual, dict):
        out = []
        for key in sorted(set(golden) | set(actual), key=str):
            where = f"{path}.{key}" if path else str(key)
            if key not in actual:
                out.append(f"{where}: in golden, missing from this run")
            elif key not in golden:
                out.append(f"{where}: new in this run ({actual[key]!r}), not in golden")
            else:
                out.extend(differences(golden[key], actual[key], where))
        return out
    if isinstance(golden, list) and isinstance(actual, list):
        if len(golden) != len(actual):
            return [f"{path}: golden has {len(golden)} items, this run {len(actual)}: {golden!r} vs {actual!r}"]
        return [d for i, (g, a) in enumerate(zip(golden, actual)) for d in differences(g, a, f"{path}[{i}]")]
    numbers = (int, float)
    if (
        (isinstance(golden, float) or isinstance(actual, float))
        and isinstance(golden, numbers)
        and isinstance(actual, numbers)
        and not isinstance(golden, bool)
        and not isinstance(actual, bool)
    ):
        if math.isnan(golden) and math.isnan(actual):
            return []
        if math.isclose(golden, actual, rel_tol=TOLERANCE, abs_tol=TOLERANCE):
            return []
        return [f"{path}: golden {golden!r} != this run {actual!r} (|Δ| = {abs(golden - actual):.3g})"]
    if golden != actual or type(golden) is not type(actual):
        return [f"{path}: golden {golden!r} != this run {actual!r}"]
    return []


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_base_model_outputs_match_golden(case, tmp_path, harness_cache):
    import torch

    from harness.config import SuiteConfig, load_config
    from harness.evaluate.run import run_eval
    from harness.runtime.env import library_versions

    suite_file, overrides = CASES[case]
    suite = load_config(SuiteConfig, SUITES / suite_file, overrides)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the same reduction order on every machine
    try:
        result = run_eval(
            suite,
            str(SUITES / suite_file),
            out_root=tmp_path,
            run_id=case,
            log=lambda *a, **k: None,
            progress_bars=False,
        )
    finally:
        torch.set_num_threads(threads)
    records = [
        json.loads(line)
        for line in (result.run_dir / "records" / "base.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    actual = snapshot(result.results, records, f"suites/{suite_file}", overrides)

    golden_file = GOLDEN_DIR / f"{case}.json"
    if BLESS:
        versions = library_versions()
        blessed = dict(actual, blessed_with={k: versions[k] for k in ("torch", "transformers", "peft", "bitsandbytes")})
        golden_file.write_text(
            json.dumps(blessed, ensure_ascii=False, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        return
    if not golden_file.is_file():
        pytest.fail(f"{golden_file} is missing; create it with HARNESS_BLESS=1 pytest tests/golden")
    golden = json.loads(golden_file.read_text(encoding="utf-8"))
    blessed_with = golden.pop("blessed_with", {})
    diffs = differences(golden, actual)
    if diffs:
        now = library_versions()
        shown = "\n  ".join(diffs[:60]) + (f"\n  ... and {len(diffs) - 60} more" if len(diffs) > 60 else "")
        pytest.fail(
            f"{case}: {len(diffs)} difference(s) from {golden_file.name}:\n  {shown}\n"
            f"blessed with {blessed_with}; now { ({k: now[k] for k in blessed_with}) }\n"
            f"If the change is intended, re-bless with HARNESS_BLESS=1 pytest tests/golden and review the diff.",
            pytrace=False,
        )
