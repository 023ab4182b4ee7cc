"""`harness eval SUITE --checkpoints adapters/NAME`: every checkpoint a training run saved
(`checkpoints/checkpoint-STEP`) and its final adapter as the suite's models, named `step-N` and `final`,
as a user listing them under `models.adapters` would have them; and each column's step, which
results.json carries for the report's metric-against-step plot and the best checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

from harness.errors import ConfigError
from harness.model.adapters import WEIGHT_FILES
from harness.runs.best import best_index

STEP_PREFIX = "checkpoint-"


def checkpoint_models(directory: str | Path) -> tuple[dict[str, str], dict]:
    """({column name: adapter directory}, the description for results.json), in step order, the final
    adapter last."""
    root = Path(directory)
    steps = {
        int(p.name[len(STEP_PREFIX) :]): p
        for p in (root / "checkpoints").glob(f"{STEP_PREFIX}*")
        if p.name[len(STEP_PREFIX) :].isdigit() and _complete(p)
    }
    if not steps:
        raise ConfigError(
            f"--checkpoints {directory}: no saved checkpoint under {root / 'checkpoints'}; train with "
            "training.save_steps below max_steps (and save_total_limit: null to keep them all)"
        )
    adapters = {f"step-{step}": str(steps[step]) for step in sorted(steps)}
    at = {f"step-{step}": step for step in sorted(steps)}
    if _complete(root):
        adapters["final"] = str(root)
        at["final"] = _final_step(root, max(steps))
    return adapters, {"dir": str(directory), "steps": at}


def _complete(path: Path) -> bool:
    """A checkpoint with its adapter saved; one cut short while saving is passed over, as --resume does."""
    return (path / "adapter_config.json").is_file() and any((path / name).is_file() for name in WEIGHT_FILES)


def _final_step(root: Path, last_saved: int) -> int:
    """The final adapter's step: its train record's global steps (a run may end past its last checkpoint)."""
    try:
        steps = json.loads((root / "train_record.json").read_text(encoding="utf-8")).get("global_steps")
    except (OSError, ValueError, AttributeError):
        steps = None
    return steps if isinstance(steps, int) else last_saved


def best_checkpoint(checkpoints: dict, metrics: dict, metric_info: dict) -> dict | None:
    """The column with the best value of the primary (first) metric; ties go to the earlier step."""
    if not metric_info:
        return None
    label = next(iter(metric_info))
    higher = bool((metric_info[label] or {}).get("higher_is_better", True))
    names = list(checkpoints["steps"])
    values = [(metrics.get(name, {}).get(label) or {}).get("value") for name in names]
    i = best_index(values, higher)
    if i is None:
        return None
    return {"name": names[i], "step": checkpoints["steps"][names[i]], "metric": label, "value": values[i]}
