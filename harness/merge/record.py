"""merge_record.json: what was merged and how, the adapters' training in brief, what verification
found, and the eval run named with --run."""

from __future__ import annotations

import time
from pathlib import Path

from harness import __version__
from harness.errors import HarnessError
from harness.merge.options import DENSITY_METHODS
from harness.runs.store import RunDir, check_results


def merge_record(req, infos, quant, probes, verification: dict) -> dict:
    return {
        "harness_version": __version__,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "base": req.base,
        "dtype": req.dtype,
        "dequantize": req.dequantize,
        "method": req.method,
        "weights": req.weights,
        "density": req.density if req.method in DENSITY_METHODS else None,
        "quantization_of_evaluated_path": quant.model_dump(),
        "adapters": [
            {"path": i.path, "sha256": i.sha256, "train_record": _train_summary(i.train_record)} for i in infos
        ],
        "probes": probes,
        "verification": verification,
        "eval_run": eval_results(req.run_dir),
    }


def eval_results(run_dir: str | None) -> dict | None:
    """The summary of an eval run's results.json (None without --run); a damaged run is refused."""
    if not run_dir:
        return None
    path = Path(run_dir) / "results.json"
    if not path.is_file():
        raise HarnessError(f"--run {run_dir}: no results.json there; give a run directory written by harness eval")
    results = RunDir(Path(run_dir)).read_json("results.json")
    check_results(results, path)
    return {k: results.get(k) for k in ("suite", "run_id", "n_samples", "metrics", "deltas", "metric_info")}


def _train_summary(record: dict | None) -> dict | None:
    if not record:
        return None
    losses = [h["loss"] for h in record.get("history", []) if "loss" in h]
    return {
        "base_model": record.get("base_model"),
        "data": record.get("data"),
        "steps": record.get("global_steps"),
        "final_loss": losses[-1] if losses else None,
        "lora": (record.get("config") or {}).get("lora"),
    }
