"""Where the training curves go (`training.report_to`): TensorBoard under OUTPUT_DIR/tensorboard, and
Weights & Biases where it is installed. Both are added as callbacks to the trainer that reports (rank 0,
not a batch-size probe) rather than through TrainingArguments.report_to, which would make every trainer
built in the process report."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from harness.config import TrainConfig
from harness.errors import ConfigError


def check_reporters(config: TrainConfig) -> None:
    """Before loading: a reporter that is not installed."""
    if "wandb" in config.training.report_to and importlib.util.find_spec("wandb") is None:
        raise ConfigError(
            "training.report_to: wandb is not installed; pip install wandb, or remove wandb from the list"
        )


def add_reporters(trainer, report_to: list[str], out: Path) -> None:
    if "tensorboard" in report_to:  # made only once there is something to train on
        _add_tensorboard(trainer, out / "tensorboard")
    if "wandb" in report_to:
        from transformers.integrations import WandbCallback

        trainer.add_callback(WandbCallback())


def _add_tensorboard(trainer, log_dir: Path) -> None:
    # An explicit writer rather than TENSORBOARD_LOGGING_DIR, which would leak into the whole process.
    from torch.utils.tensorboard import SummaryWriter
    from transformers.integrations import TensorBoardCallback

    trainer.add_callback(TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(log_dir))))
