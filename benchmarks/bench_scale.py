"""Scaling rows: `harness eval` and `harness train` in one process on one GPU, then in two processes on
two GPUs through `accelerate launch` (the command's own `--num-processes 2`), as a user runs them.

eval   the KorQuAD suite, base + one adapter, the same dev questions and settings as `gpu.py eval`:
       prompts/s per model (from results.json, every rank's samples over the column's wall time),
       the command's wall time, and whether results.json and every record agree between the runs.
train  the seed settings (micro-batch 4 × accumulation 4: a global batch of 16, which harness keeps
       under 2 processes), 20 steps, then the same with micro-batch 16 (a global batch of 64):
       tokens/s (every rank's tokens), peak memory and the loss at each step of both runs.

Each run is the real CLI in a subprocess (CUDA_VISIBLE_DEVICES picks the GPUs), so loading, process
start and NCCL set-up are in the wall times. NVLink multicast stays off (NCCL_NVLS_ENABLE=0 and the
like, set here if the environment has not set them: the device tool's machines require it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml
from common import ROOT

from harness.runs.store import (  # importable: common put ROOT on sys.path
    comparable_records,
    comparable_results,
)

NO_MULTICAST = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}


def bench_scale(
    base: str,
    adapter: str,
    data: str,
    work: Path,
    smoke: bool,
    samples: int,
    processes: int = 2,
    figures: dict | None = None,
    save=None,
) -> dict:
    from bench_eval import NEW_TOKENS
    from bench_train import seed_settings

    figures = figures if figures is not None else {}
    new = 8 if smoke else NEW_TOKENS
    samples = 8 if smoke else samples
    suite = work / "scale-suite.yaml"
    suite.write_text(yaml.safe_dump(_suite(base, adapter, data, samples, new), allow_unicode=True), encoding="utf-8")
    runs = work / "scale-runs"
    # A short run first compiles the Triton kernels into the on-disk cache both runs share, so neither
    # pays for it.
    warm = work / "scale-warm-up.yaml"
    warm.write_text(
        yaml.safe_dump(_suite(base, adapter, data, min(16, samples), new), allow_unicode=True), encoding="utf-8"
    )
    _eval_row(warm, runs, 1, "warm-up")
    figures["eval"] = {"samples": samples, "new_tokens": new, "processes": processes}
    for world in (1, processes):
        figures["eval"][f"world{world}"] = _eval_row(suite, runs, world)
        _save(figures, save)
    figures["eval"]["comparison"] = compare_runs(runs / "world1", runs / f"world{processes}")
    figures["eval"]["ratios"] = _eval_ratios(figures["eval"], processes)
    _save(figures, save)

    # The seed settings, then the same with a 4× larger global batch (16 × 4): a step of the seed
    # settings is short enough that its fixed cost shows. More examples than the steps take, so no
    # step is an epoch's short last batch (which accelerate fills up on the ranks that run out).
    for section, scale in (("train", 1), ("train_batch64", 4)):
        rows = figures[section] = {"processes": processes}
        for world in (1, processes):
            out = work / f"scale-adapter-{section}-world{world}"
            settings = seed_settings(base, data, out, smoke)
            settings["training"]["batch_size"] *= scale
            settings["data"]["limit"] = settings["data"]["limit"] * scale * 5 // 4
            config = work / f"scale-{section}-world{world}.yaml"
            config.write_text(yaml.safe_dump(settings, allow_unicode=True), encoding="utf-8")
            rows[f"world{world}"] = _train_row(config, out, world)
            _save(figures, save)
        rows["comparison"] = compare_losses(rows["world1"], rows[f"world{processes}"])
        rows["ratios"] = {"tokens_per_second": _ratio(rows, processes, "tokens_per_second")}
        _save(figures, save)
    print(table(figures, processes), flush=True)
    return figures


def _suite(base: str, adapter: str, data: str, samples: int, new: int) -> dict:
    suite = yaml.safe_load((ROOT / "suites" / "korquad.yaml").read_text(encoding="utf-8"))
    suite["dataset"].update(path=data, path_env=None, limit=samples)
    suite["generation"].update(max_new_tokens=new, min_new_tokens=new, stop=[])
    suite["models"] = {"base": base, "adapters": {"adapter": adapter}}
    suite["bootstrap"] = {"resamples": 200}
    return suite


def _harness(argv: list[str], world: int, log: Path) -> float:
    """`python -m harness ARGV` on `world` GPUs (`--num-processes` when more than one); its wall time."""
    env = {**os.environ, **{k: os.environ.get(k, v) for k, v in NO_MULTICAST.items()}, "PYTHONUNBUFFERED": "1"}
    if _gpus() >= world:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(world))
    command = [sys.executable, "-m", "harness", *argv] + (["--num-processes", str(world)] if world > 1 else [])
    print(f"bench scale: {' '.join(command)}", flush=True)
    started = time.time()
    with open(log, "w", encoding="utf-8") as out:
        code = subprocess.run(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    wall = time.time() - started
    if code != 0:
        raise RuntimeError(f"exit code {code}: {' '.join(command)}\n{log.read_text(encoding='utf-8')[-3000:]}")
    return wall


def _gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _eval_row(suite: Path, runs: Path, world: int, name: str | None = None) -> dict:
    run = runs / (name or f"world{world}")
    if run.exists():
        import shutil

        shutil.rmtree(run)
    wall = _harness(
        ["eval", str(suite), "--out", str(runs), "--run-id", run.name],
        world,
        runs.parent / f"scale-eval-{run.name}.log",
    )
    results = json.loads((run / "results.json").read_text(encoding="utf-8"))
    return {
        "wall_s": round(wall, 2),
        "engine": results.get("engine"),
        "prompts_per_s": {c: t["samples_per_s"] for c, t in results["throughput"].items()},
        "generation_wall_s": {c: t["wall_s"] for c, t in results["throughput"].items()},
        "metrics": {c: {m: v["value"] for m, v in ms.items()} for c, ms in results["metrics"].items()},
        "world_size": results.get("world_size", 1),
    }


def _train_row(config: Path, out: Path, world: int) -> dict:
    wall = _harness(["train", str(config), "--overwrite"], world, config.with_suffix(".log"))
    record = json.loads((out / "train_record.json").read_text(encoding="utf-8"))
    return {
        "wall_s": round(wall, 2),
        "tokens_per_second": record["tokens_per_second"],
        "train_runtime_s": record["train_runtime_s"],
        "tokens": record["tokens_seen"],
        "peak_memory_bytes": record["peak_memory_bytes"],
        "world_size": record.get("world_size", 1),
        "plan": {k: record["plan"][k] for k in ("batch_size", "gradient_accumulation", "gradient_checkpointing")},
        "losses": {h["step"]: h["loss"] for h in record["history"] if "loss" in h},
    }


def compare_runs(one: Path, other: Path) -> dict:
    """Whether two eval runs agree: results.json without its run-describing fields (and `verify`, which
    only the benchmark's runs record, with its timing), and each record."""
    differing, identical = {}, True
    for path in sorted((one / "records").glob("*.jsonl")):
        a, b = comparable_records(path), comparable_records(other / "records" / path.name)
        differing[path.stem] = sum(x.get("output") != y.get("output") for x, y in zip(a, b)) + abs(len(a) - len(b))
        identical = identical and a == b
    a, b = comparable_results(one, leave_out={"verify"}), comparable_results(other, leave_out={"verify"})
    return {
        "results_json_identical": a == b,
        "records_identical": identical,
        "outputs_differing": differing,
        "fields_differing": sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k)),
    }


def compare_losses(one: dict, other: dict) -> dict:
    steps = sorted(set(one["losses"]) & set(other["losses"]), key=int)
    relative = {s: (other["losses"][s] - one["losses"][s]) / one["losses"][s] for s in steps}
    return {
        "steps": len(steps),
        "max_abs_relative_loss_difference": max((abs(v) for v in relative.values()), default=None),
        "first_step_relative_difference": relative[steps[0]] if steps else None,
        "last_step_relative_difference": relative[steps[-1]] if steps else None,
    }


def _eval_ratios(rows: dict, processes: int) -> dict:
    one, many = rows["world1"], rows[f"world{processes}"]
    return {
        **{
            f"prompts_per_s_{c}": round(many["prompts_per_s"][c] / one["prompts_per_s"][c], 3)
            for c in one["prompts_per_s"]
            if one["prompts_per_s"][c] and many["prompts_per_s"].get(c)
        },
        "wall_s": round(one["wall_s"] / many["wall_s"], 3),
    }


def _ratio(rows: dict, processes: int, key: str):
    a, b = rows["world1"].get(key), rows[f"world{processes}"].get(key)
    return round(b / a, 3) if a and b else None


def table(figures: dict, processes: int) -> str:
    e = figures["eval"]
    lines = [f"| row | 1 process | {processes} processes | ratio |", "| --- | ---: | ---: | ---: |"]
    for column in e["world1"]["prompts_per_s"]:
        lines.append(
            f"| eval {column}, prompts/s | {e['world1']['prompts_per_s'][column]} | "
            f"{e[f'world{processes}']['prompts_per_s'][column]} | {e['ratios'].get(f'prompts_per_s_{column}')} |"
        )
    lines.append(
        f"| eval end to end, s | {e['world1']['wall_s']} | {e[f'world{processes}']['wall_s']} | "
        f"{e['ratios']['wall_s']} |"
    )
    for section, label in (
        ("train", "train tokens/s, seed settings"),
        ("train_batch64", "train tokens/s, global batch 64"),
    ):
        t = figures[section]
        lines.append(
            f"| {label} | {t['world1']['tokens_per_second']} | {t[f'world{processes}']['tokens_per_second']} | "
            f"{t['ratios']['tokens_per_second']} |"
        )
    c = e["comparison"]
    lines += [
        "",
        f"eval results.json identical: {c['results_json_identical']} (differing: {c['fields_differing']}); "
        f"records identical: {c['records_identical']}; outputs differing: {c['outputs_differing']}",
        *(
            f"{section} loss, largest relative difference over {figures[section]['comparison']['steps']} steps: "
            f"{figures[section]['comparison']['max_abs_relative_loss_difference']}"
            for section in ("train", "train_batch64")
        ),
    ]
    return "\n".join(lines)


def _save(figures: dict, save) -> None:
    if save:
        save()
