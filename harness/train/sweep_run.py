"""A sweep's points trained one after another with `train()`, each into its own directory, and the
sweep record (sweep.json) rewritten after every point so an interrupted sweep can be resumed.

A point that fails while training (weights gone NaN, CUDA out of memory, a bad file met late) is
recorded with its one-line error and the next point goes on. `--resume` skips the points whose
adapter is saved, retries a failed one from the start and continues an unfinished one from its last
checkpoint.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from pathlib import Path

from harness import __version__
from harness.errors import ConfigError, HarnessError, describe, first_line
from harness.runs.sweep import SWEEP_FILE, read_sweep
from harness.runtime.console import keep_log_in
from harness.runtime.distributed import Dist
from harness.runtime.env import detect, release_cuda_memory
from harness.runtime.files import atomic_write_json
from harness.train.checkpoints import check_output, last_checkpoint
from harness.train.lora import check_trainable_base
from harness.train.plan import plan_training
from harness.train.recipe import train
from harness.train.record import RECORD_FILE
from harness.train.reporting import check_reporters
from harness.train.selection import check_selection
from harness.train.sweep import Sweep, SweepPoint

logger = logging.getLogger(__name__)


def run_sweep(sweep: Sweep, *, resume: bool, overwrite: bool) -> dict:
    """Train every point not yet finished; returns the sweep record (as written to sweep.json). Each
    point's start is an INFO line of this module's logger, so the sweep's log shows where it begins."""
    dist = Dist.current()
    check_points(sweep, dist.world)
    record = _start_record(sweep, resume=resume, overwrite=overwrite) if dist.main else _fresh_record(sweep)
    dist.barrier()
    keep_log_in(sweep.directory / "sweep.log")  # one log for the whole sweep, every point's lines in order
    total = len(sweep.points)
    for i, (point, entry) in enumerate(zip(sweep.points, record["points"]), 1):
        if resume and _finished(point):
            entry.update(status="ok", error=None, **_outcome(_read_train_record(point)))
            logger.info("sweep point %d/%d: %s (finished earlier; skipped)", i, total, point.name)
            continue
        logger.info("sweep point %d/%d: %s", i, total, point.name)
        retry = entry["status"] == "failed"
        entry.update(status="running", error=None)
        _write(sweep, record, dist)
        entry.update(_train_point(point, resume=resume and not retry, overwrite=overwrite or resume))
        _write(sweep, record, dist)
    record["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    _write(sweep, record, dist)
    return record


def check_points(sweep: Sweep, world: int) -> None:
    """What train() checks before loading anything, for every point at once: a setting this machine
    cannot honour or a base this recipe cannot train fails the sweep before its first point trains."""
    env = detect()
    checked_bases = set()
    for point in sweep.points:
        try:
            plan_training(point.config, env, world)
            check_selection(point.config)
            check_reporters(point.config)
            if (point.config.base, point.config.data.chat) not in checked_bases:
                check_trainable_base(point.config)
                checked_bases.add((point.config.base, point.config.data.chat))
        except HarnessError as exc:
            raise type(exc)(f"--sweep point {point.name}: {exc}") from None


def _train_point(point: SweepPoint, *, resume: bool, overwrite: bool) -> dict:
    """Train one point; what its sweep entry becomes (status, error, losses, runtime)."""
    out = Path(point.config.output_dir)
    resume = resume and last_checkpoint(out) is not None
    _reset_peak_memory()  # each point's train record has its own peak, not the sweep's so far
    try:
        record = train(point.config, resume=resume, overwrite=overwrite and not resume)
    except Exception as exc:  # recorded, and the next point goes on
        if not isinstance(exc, (HarnessError, OSError)) and "out of memory" not in str(exc).lower():
            traceback.print_exc()  # a bug rather than the point's settings: the traceback goes to the log
        error = first_line(exc, 300) if isinstance(exc, HarnessError) else describe(exc, 300)
        logger.info("harness train: sweep point %s failed: %s", point.name, error)
        outcome = {"status": "failed", "error": error}
    else:
        outcome = {"status": "ok", "error": None, **_outcome(record)}
    release_cuda_memory()  # the point's model and optimizer are unreachable now: free them for the next
    return outcome


def _reset_peak_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def _outcome(record: dict) -> dict:
    history = [h for h in record.get("history") or [] if isinstance(h, dict)]
    losses = [h["loss"] for h in history if "loss" in h]
    evals = [h["eval_loss"] for h in history if "eval_loss" in h]
    return {
        "train_loss": losses[-1] if losses else None,
        "eval_loss": evals[-1] if evals else None,
        "runtime_s": record.get("train_runtime_s"),
        "steps": record.get("global_steps"),
    }


def _finished(point: SweepPoint) -> bool:
    out = Path(point.config.output_dir)
    return (out / RECORD_FILE).is_file() and (out / "adapter_config.json").is_file()


def _read_train_record(point: SweepPoint) -> dict:
    try:
        record = json.loads((Path(point.config.output_dir) / RECORD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _fresh_record(sweep: Sweep) -> dict:
    return {
        "harness_version": __version__,
        "config": sweep.source,
        "fields": sweep.fields,
        "settings": sweep.settings,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "points": [
            {
                "name": p.name,
                "dir": p.name,
                "output_dir": p.config.output_dir,
                "values": p.values,
                "status": "pending",
                "error": None,
                "train_loss": None,
                "eval_loss": None,
                "runtime_s": None,
                "steps": None,
            }
            for p in sweep.points
        ],
    }


def _start_record(sweep: Sweep, *, resume: bool, overwrite: bool) -> dict:
    """The record to continue (--resume) or a new one, once the sweep directory is known not to hold
    another run that this one would mix with."""
    record = _fresh_record(sweep)
    if resume:
        if not (sweep.directory / SWEEP_FILE).is_file():
            raise HarnessError(
                f"{sweep.directory}: --resume found no {SWEEP_FILE}; run without --resume to start the sweep"
            )
        previous = read_sweep(sweep.directory, where="--resume:")
        _check_same_sweep(sweep, previous)
        statuses = {p["name"]: p for p in previous["points"]}
        for entry in record["points"]:
            old = statuses.get(entry["name"], {})
            entry.update({k: old.get(k, entry[k]) for k in ("status", "error", "train_loss", "eval_loss", "runtime_s")})
        record["started_at"] = previous.get("started_at", record["started_at"])
    elif not overwrite:
        if (sweep.directory / SWEEP_FILE).exists():
            raise HarnessError(
                f"{sweep.directory}: already holds a sweep ({SWEEP_FILE}); pass --resume to continue it, "
                "--overwrite to train it again, or set output_dir to another place"
            )
        check_output(sweep.directory, False, False, RECORD_FILE)
        for point in sweep.points:
            check_output(Path(point.config.output_dir), False, False, RECORD_FILE)
    atomic_write_json(sweep.directory / SWEEP_FILE, record)
    return record


def _check_same_sweep(sweep: Sweep, previous: dict) -> None:
    where = sweep.directory / SWEEP_FILE
    if previous["fields"] != sweep.fields:
        raise ConfigError(
            f"--resume: {where} sweeps {_fields_text(previous['fields'])}, not {_fields_text(sweep.fields)}; "
            "give the same --sweep options, or set output_dir to another place for a new sweep"
        )
    old = previous.get("settings")
    if isinstance(old, dict) and old != sweep.settings:
        field = _first_difference(old, sweep.settings)
        raise ConfigError(
            f"--resume: field '{field}' differs from the sweep in {where}; its finished points were trained "
            "with the recorded settings: give the same config and --set options, or set output_dir elsewhere"
        )


def _fields_text(fields: dict) -> str:
    return " ".join(f"{k}={','.join(map(str, v))}" for k, v in fields.items())


def _first_difference(a, b, prefix: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{prefix}{key}.")
    return prefix.rstrip(".") or "<config>"


def _write(sweep: Sweep, record: dict, dist: Dist) -> None:
    if dist.main:
        atomic_write_json(sweep.directory / SWEEP_FILE, record)
