"""`benchmarks/gpu.py all --smoke`: every benchmark row runs on the tiny model on a CPU, so the GPU
script cannot rot between GPU sessions. Rows that need CUDA or an uninstalled peer record why."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KORQUAD = ROOT.parent / "shared" / "data" / "korquad" / "KorQuAD_v1.0_dev.json"

pytestmark = pytest.mark.slow
needs_korquad = pytest.mark.skipif(
    not KORQUAD.is_file() and not os.environ.get("KORQUAD_DEV"),
    reason="KorQuAD 1.0 dev not found (../shared/data/korquad or $KORQUAD_DEV): the benchmark reads it",
)


def run_benchmark(tmp_path, what: str, *args: str, timeout: int = 600) -> tuple[dict, str]:
    """`gpu.py WHAT --smoke ARGS` in a subprocess: (its JSON figures, its stdout)."""
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "OUT": str(out), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu.py"), what, "--smoke", *args, "--work", str(tmp_path / "work")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / f"bench-{what}.json").read_text()), done.stdout


@needs_korquad
def test_smoke_runs_every_row(tmp_path, harness_cache):
    figures, _ = run_benchmark(tmp_path, "all", "--verify", "2", timeout=900)
    for section, rows in (
        ("eval", ["harness_eval", "static_cache", "peft_4bit"]),
        (
            "decode",
            [
                "same_outputs",
                "trained_model_verify",
                "batch1_decode",
                "batch1_static_peer",
                "perplexity_harness",
                "perplexity_4bit_forward",
            ],
        ),
    ):
        for name in rows:
            assert "error" not in figures[section][name], (section, name, figures[section][name])
    ours = figures["eval"]["harness_eval"]
    assert ours["engine"] == "dense" and set(ours["prompts_per_s"]) == {"base", "adapter"}
    same = figures["decode"]["same_outputs"]
    assert all(
        same[m][path]["max_abs_logit_diff"] < 1e-5 for m in ("base", "adapter") for path in ("dense", "plain_again")
    )
    assert "answers equal" in figures["decode"]["trained_model_verify"]["verify"]["tiny-ko-qa"]
    assert figures["decode"]["perplexity_relative_difference"] < 1e-3
    assert figures["train"]["harness_seed"]["tokens_per_second"] > 0


@needs_korquad
def test_smoke_eval_on_the_first_questions(tmp_path, harness_cache):
    """`--questions first`: harness evaluates the first questions in the file's order (those share
    passages, as lm-evaluation-harness's --limit takes them) and the peers run on the same prompts."""
    # The file the benchmark reads, named to it, so both see the same questions.
    data = KORQUAD if KORQUAD.is_file() else Path(os.environ["KORQUAD_DEV"])
    figures, _ = run_benchmark(tmp_path, "eval", "--questions", "first", "--verify", "0", "--korquad", str(data))
    ours = figures["eval"]["harness_eval"]
    assert "error" not in ours and figures["eval"]["questions"] == "first"
    assert figures["eval"]["harness_questions"] == 8
    doc = json.loads(data.read_text(encoding="utf-8"))
    first = [q["id"] for a in doc["data"] for p in a["paragraphs"] for q in p["qas"]][:8]
    run = next((tmp_path / "work" / "runs").iterdir())
    ids = [
        json.loads(line)["id"] for line in (run / "records" / "adapter.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    assert sorted(ids) == sorted(first)
    assert "error" not in figures["eval"]["static_cache"]


@needs_korquad
def test_scale_smoke_compares_one_process_with_two(tmp_path, harness_cache):
    """`gpu.py scale --smoke`: the real CLI in one process and in two gloo processes (accelerate launch)."""
    figures, stdout = run_benchmark(tmp_path, "scale")
    scale = figures["scale"]
    assert scale["eval"]["world2"]["world_size"] == 2 and scale["train"]["world2"]["world_size"] == 2
    assert scale["eval"]["comparison"]["results_json_identical"] and scale["eval"]["comparison"]["records_identical"]
    assert set(scale["eval"]["ratios"]) == {"prompts_per_s_base", "prompts_per_s_adapter", "wall_s"}
    assert scale["train"]["comparison"]["steps"] == 4 and scale["train"]["ratios"]["tokens_per_second"] > 0
    assert "| train tokens/s, seed settings |" in stdout and "| train tokens/s, global batch 64 |" in stdout


@needs_korquad
def test_shares_smoke_merges_the_ranks_answers_into_one_process_answers(tmp_path, harness_cache):
    """`gpu.py shares --smoke`: each rank's share of an eval, run in turn, answers every sample once, as
    one process does; and one process repeats itself."""
    shares = run_benchmark(tmp_path, "shares")[0]["shares"]
    for name in ("base", "adapter"):
        assert shares[name]["repeat_outputs_differing"] == 0
        for world in ("world2", "world4"):
            row = shares[name][world]
            assert (row["missing"], row["outputs_differing"]) == (0, 0) and len(row["rank_walls_s"]) == int(world[-1])


@needs_korquad
def test_seq2seq_smoke_runs_every_row(tmp_path, harness_cache):
    figures, stdout = run_benchmark(tmp_path, "seq2seq")
    rows = figures["seq2seq"]
    for row in ("plain_seq2seq_trainer", "harness_train", "harness_eval", "plain_generate", "harness_train_find"):
        assert "error" not in rows[row], (row, rows[row])
    assert rows["harness_train_find"]["plan"]["batch_probe"]["chosen"] >= 1
    assert re.search(r"^harness_eval +[\d,]+ ", stdout, re.M), stdout[-2000:]  # the summary table


@needs_korquad
def test_choice_smoke_runs_harness_beside_lm_eval(tmp_path, harness_cache):
    """`gpu.py choice --smoke`: KMMLU-shaped questions through `harness eval` (base and adapter, verified
    against the plain path) and, where it is installed, lm-evaluation-harness's HF backend on the
    same contexts (parity of the two is tests/eval/test_choice_parity.py's)."""
    choice = run_benchmark(tmp_path, "choice", "--verify", "2")[0]["choice"]
    ours = choice["harness_eval"]
    assert "error" not in ours, ours
    for name in ("base", "adapter"):
        assert ours[name]["requests_per_s"] > 0 and ours[name]["context_tokens_per_s"] > 0
        assert ours["verify"][name].startswith("2/2 predictions equal")
    peer = choice["lm_eval_hf"]
    if "error" in peer:
        assert "No module named 'lm_eval'" in peer["error"], peer
        return
    assert {"base_batch_4", "adapter_batch_4"} <= set(peer), peer
    for name in ("base_batch_4", "adapter_batch_4"):
        assert peer[name]["requests_per_s"] > 0 and 0 <= peer[name]["same_predictions_as_harness"] <= 8


@needs_korquad
def test_choice_timeline_smoke_records_the_base_columns_events_in_order(tmp_path, harness_cache):
    """`gpu.py choice --smoke --timeline`: the base column's events, first and second eval, in the
    order the engine meets them: encoded, grouped, planned, each batch queued then answered."""
    timeline = run_benchmark(tmp_path, "choice", "--timeline")[0]["choice"]["timeline"]
    for tag in ("cold", "warm"):
        events = [name for _, name in timeline[f"timeline_{tag}"]["events"]]
        times = [at for at, _ in timeline[f"timeline_{tag}"]["events"]]
        assert times == sorted(times) and timeline[f"timeline_{tag}"]["base_wall_s"] > 0
        first = [
            "column start",
            "tokenize #1 end",
            "group_rows #1 end",
            "plan_prefixes #1 end",
            "queue_batch #1 start",
            "answer_batch #1 end",
        ]
        assert all(name in events for name in first), events
        assert [events.index(name) for name in first] == sorted(events.index(name) for name in first)
        assert events[-1] == "column end"
