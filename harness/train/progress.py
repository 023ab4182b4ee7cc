"""What harness watches while the Trainer runs: a progress bar of optimizer steps with the latest
losses, on harness's terminal, and the LoRA weights' finiteness after every step.

The bar stands in for the Trainer's own, which prints every log entry as a dict on stdout between
harness's lines; here the entries go to the command's log file and the curves to TensorBoard.
"""

from __future__ import annotations

import json
import logging

from transformers import TrainerCallback

from harness.runtime.console import terminal

logger = logging.getLogger(__name__)


class TrainProgress(TrainerCallback):
    def __init__(self) -> None:
        self.bar = None
        self.shown: dict[str, str] = {}

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=state.max_steps,
                initial=state.global_step,
                desc="train",
                unit="step",
                file=terminal(),
                dynamic_ncols=True,
            )

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        logger.info("step %d: %s", state.global_step, json.dumps(logs, default=str))
        if self.bar is not None:
            latest = {
                key: f"{logs[key]:.4g}" for key in ("loss", "eval_loss") if isinstance(logs.get(key), (int, float))
            }
            if latest:
                self.shown.update(latest)
                self.bar.set_postfix(self.shown, refresh=True)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def replace_progress_bar(trainer) -> None:
    """Swap the Trainer's bar (or its printer, where bars are off) for TrainProgress."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(TrainProgress())


class StopOnNonFinite(TrainerCallback):
    """Stops training at the first optimizer step that leaves a trainable weight NaN or infinite, before
    that step is saved as a checkpoint, so the last checkpoint on disk is the last good one.

    The weights rather than the logged loss: the loss is logged every `logging_steps`, and a NaN loss
    reaches every LoRA weight through its gradient in the same step (an fp16 run's scaler skips such
    steps, and its weights stay finite)."""

    def __init__(self, model) -> None:
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.diverged_at: int | None = None

    def on_step_end(self, args, state, control, **kwargs):
        import torch

        if not self.params or bool(torch.stack([p.detach().isfinite().all() for p in self.params]).all()):
            return
        self.diverged_at = state.global_step
        control.should_save = control.should_evaluate = False
        control.should_training_stop = True
