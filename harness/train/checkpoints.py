"""The checkpoints of a training run (`OUT/checkpoints/checkpoint-STEP`), and which one to resume."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from harness.errors import HarnessError

logger = logging.getLogger(__name__)


def last_checkpoint(out: Path, note_skipped: bool = False) -> str | None:
    """The newest complete checkpoint. A run killed while saving leaves a directory without the
    trainer state the Trainer writes last; resuming from it would fail, so it is passed over (and
    logged as such with `note_skipped`, where the run resumes)."""
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    ckpt_dir = out / "checkpoints"
    if not ckpt_dir.is_dir():
        return None
    steps = {
        p: int(p.name.rsplit("-", 1)[1])
        for p in ckpt_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*")
        if p.is_dir() and p.name.rsplit("-", 1)[1].isdigit()
    }
    for path in sorted(steps, key=steps.get, reverse=True):
        missing = _checkpoint_missing(path)
        if not missing:
            return str(path)
        if note_skipped:
            logger.info("harness train: skipping %s: incomplete (%s; interrupted while saving?)", path, missing)
    return None


def _checkpoint_missing(path: Path) -> str:
    """What an incomplete checkpoint lacks ("" when complete)."""
    try:
        json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "no readable trainer_state.json"
    if not any((path / name).is_file() for name in ("adapter_model.safetensors", "adapter_model.bin")):
        return "no adapter weights"
    if not (path / "optimizer.pt").is_file():
        return "no optimizer.pt"
    return ""


def check_output(out: Path, resume: bool, overwrite: bool, record_file: str) -> None:
    """Refuse to train into `out` where that would mix runs (unless `resume` or `overwrite` says how)."""
    if resume:
        if last_checkpoint(out) is None:
            raise HarnessError(
                f"{out}: --resume found no checkpoint under {out / 'checkpoints'} that was saved "
                f"completely; run without --resume"
            )
        return
    if overwrite:
        return  # the old run's files go only once the new run starts (recipe._clear_previous_run)
    if not out.exists():
        return
    if (out / record_file).exists() or (out / "adapter_config.json").exists():
        raise HarnessError(
            f"{out}: already holds an adapter; pass --overwrite, or set name/output_dir to another place"
        )
    if any((out / "checkpoints").glob("checkpoint-*")):
        raise HarnessError(f"{out}: holds checkpoints of an unfinished run; pass --resume to continue or --overwrite")
