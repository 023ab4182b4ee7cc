"""Greedy generation does not depend on the batch size: left padding, length sorting and the
stop-string / eos handling give every sample the same output whether it is generated alone or
in a batch of 3 or 8 (base model and the session adapter)."""

from __future__ import annotations

import pytest
from eval_helpers import ADAPTER_NAME, qa_overrides, read_records

pytestmark = pytest.mark.slow

FIELDS = ("output", "prediction", "generated_tokens", "stop_reason", "prompt_tokens", "metrics")


def test_greedy_outputs_identical_for_batch_sizes_1_3_8(qa_run, eval_adapter, suite_config, eval_run, tmp_path):
    runs = {8: qa_run.run_dir}
    for batch_size in (1, 3):
        suite = suite_config("korquad_sample.yaml", qa_overrides(batch_size=batch_size), {ADAPTER_NAME: eval_adapter})
        runs[batch_size] = eval_run(suite, tmp_path, f"bs{batch_size}").run_dir

    mismatches = []
    for model in ("base", ADAPTER_NAME):
        reference = read_records(runs[1], model)
        assert len(reference) == 12
        for batch_size in (3, 8):
            other = read_records(runs[batch_size], model)
            assert [r["id"] for r in other] == [r["id"] for r in reference]
            for one, batched in zip(reference, other):
                for field in FIELDS:
                    if one[field] != batched[field]:
                        mismatches.append(
                            f"{model} bs={batch_size} sample {one['id']} {field}: "
                            f"bs=1 {one[field]!r} vs {batched[field]!r}"
                        )
    assert not mismatches, "\n".join(mismatches)


def test_stop_strings_mid_batch_do_not_depend_on_batch_size(suite_config, eval_run, tmp_path):
    """Samples that hit a stop string while others in their batch go on (padding after the stop)
    give the same output, token count and stop reason as when generated alone."""
    overrides = qa_overrides(**{"generation.stop": ["는", "다"]})
    runs = {}
    for batch_size in (1, 3, 8):
        suite = suite_config("korquad_sample.yaml", {**overrides, "batch_size": batch_size})
        runs[batch_size] = read_records(eval_run(suite, tmp_path, f"stop-bs{batch_size}").run_dir, "base")
    # Stops at different lengths: in a batch the early finishers are padded while others go on.
    assert {r["stop_reason"] for r in runs[1]} == {"stop", "length"}
    assert len({r["generated_tokens"] for r in runs[1]}) > 1, [r["generated_tokens"] for r in runs[1]]
    mismatches = [
        f"bs={bs} sample {one['id']} {field}: bs=1 {one[field]!r} vs {other[field]!r}"
        for bs in (3, 8)
        for one, other in zip(runs[1], runs[bs])
        for field in FIELDS
        if one[field] != other[field]
    ]
    assert not mismatches, "\n".join(mismatches)


def test_adapter_changes_the_outputs(qa_run):
    """Sanity check for the invariance test above: the adapter is not a no-op."""
    base = read_records(qa_run.run_dir, "base")
    adapter = read_records(qa_run.run_dir, ADAPTER_NAME)
    assert [r["output"] for r in base] != [r["output"] for r in adapter]
