"""Which weights a run keeps, on eval loss: `training.early_stopping` (transformers' EarlyStoppingCallback)
and `training.keep: best` (the Trainer's load_best_model_at_end, then the adapter is saved from the best
checkpoint's weights), with the settings they need checked by name before anything loads."""

from __future__ import annotations

import logging
from pathlib import Path

from transformers import EarlyStoppingCallback

from harness.config import TrainConfig
from harness.errors import ConfigError

logger = logging.getLogger(__name__)


def _asked(config: TrainConfig) -> str:
    """The field that needs eval loss ("" when none does)."""
    t = config.training
    if t.early_stopping is not None:
        return "training.early_stopping"
    return "training.keep: best" if t.keep == "best" else ""


def check_selection(config: TrainConfig) -> None:
    """Before loading: eval loss to choose by, and for keep: best a checkpoint at every evaluation."""
    field = _asked(config)
    if not field:
        return
    d, t = config.data, config.training
    if d.validation_fraction == 0 and not d.validation_split:
        raise ConfigError(
            f"{field} chooses by eval loss, and there is no validation data (data.validation_fraction is 0 and no "
            f"data.validation_split); set data.validation_fraction (e.g. 0.1) or data.validation_split"
        )
    if t.keep != "best" or "save_steps" not in t.model_fields_set:
        return
    every = f"training.eval_steps ({t.eval_steps})" if t.eval_steps else "every epoch (training.eval_steps unset)"
    if t.save_steps != t.eval_steps:
        raise ConfigError(
            f"training.save_steps: {t.save_steps} with training.keep: best, which saves a checkpoint at every "
            f"evaluation, {every}; remove training.save_steps or set it to training.eval_steps"
        )


def check_validation_rows(config: TrainConfig, val_rows: list) -> None:
    """After the split: a fraction of a handful of examples can still leave none."""
    field = _asked(config)
    if field and not val_rows:
        raise ConfigError(
            f"{field} chooses by eval loss, and data.validation_fraction {config.data.validation_fraction:g} held "
            f"out no example; raise it or give more examples"
        )


def selection_arguments(config: TrainConfig, has_validation: bool) -> dict:
    """TrainingArguments fields on top of trainer.training_arguments: the metric, and for keep: best a
    checkpoint saved at every evaluation and the best one's weights loaded at the end."""
    t = config.training
    if not (_asked(config) and has_validation):
        return {}
    args = {"metric_for_best_model": "eval_loss", "greater_is_better": False}
    if t.keep == "best":
        args["load_best_model_at_end"] = True
        if t.eval_steps:
            args["save_steps"] = t.eval_steps
        else:
            args["save_strategy"] = "epoch"
    return args


def add_early_stopping(trainer, config: TrainConfig) -> None:
    stop = config.training.early_stopping
    if stop is not None and trainer.eval_dataset is not None:
        trainer.add_callback(
            StopOnEvalLoss(early_stopping_patience=stop.patience, early_stopping_threshold=stop.threshold)
        )


class StopOnEvalLoss(EarlyStoppingCallback):
    """EarlyStoppingCallback that remembers the step it stopped at, for the train record."""

    stopped_at: int | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        pass  # harness sets metric_for_best_model; keep: last leaves load_best_model_at_end off on purpose

    def on_evaluate(self, args, state, control, metrics, **kwargs):
        super().on_evaluate(args, state, control, metrics, **kwargs)
        if control.should_training_stop and self.early_stopping_patience_counter >= self.early_stopping_patience:
            self.stopped_at = state.global_step


def selection_record(config: TrainConfig, trainer, out: Path) -> dict:
    """The record's `kept` (which weights the adapter holds: step, eval loss, checkpoint) and `stopped_early`
    (null, or the step and why); logged too."""
    state, t = trainer.state, config.training
    stopped = next((c.stopped_at for c in trainer.callback_handler.callbacks if getattr(c, "stopped_at", None)), None)
    stopped_early = None
    if stopped is not None:
        stopped_early = {
            "step": stopped,
            "reason": f"eval loss did not improve on {state.best_metric:.6g} by more than "
            f"{t.early_stopping.threshold:g} for {t.early_stopping.patience} evaluations (training.early_stopping)",
        }
        logger.info("harness train: stopped early at step %d: %s", stopped, stopped_early["reason"])
    losses = {h["step"]: h["eval_loss"] for h in state.log_history if "eval_loss" in h}
    kept = {"which": "last", "step": state.global_step, "eval_loss": losses.get(state.global_step)}
    best = state.best_model_checkpoint
    if t.keep == "best" and best:
        step = int(Path(best).name.rsplit("-", 1)[1])
        kept = {"which": "best", "step": step, "eval_loss": losses.get(step), "checkpoint": _relative(best, out)}
        logger.info("harness train: the adapter is the best checkpoint, step %d (eval loss %.6g)", step, losses[step])
    return {"kept": kept, "stopped_early": stopped_early}


def _relative(path: str, out: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(out.resolve()))
    except ValueError:
        return path
