"""TRL's SFTTrainer, built from the config and the plan, and the loop it runs: with an out-of-memory
back-off that keeps the global batch, and a refusal to keep weights that went NaN or infinite."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from harness.config import TrainConfig
from harness.errors import ConfigError, HarnessError
from harness.runtime.env import release_cuda_memory
from harness.train.checkpoints import last_checkpoint
from harness.train.plan import Plan

logger = logging.getLogger(__name__)


def run_training(
    config: TrainConfig,
    plan: Plan,
    model,
    tokenizer,
    rows: tuple[list, list],
    out: Path,
    *,
    resume: bool,
    main: bool,
    build=None,
):
    """Train to the end; on CUDA out of memory, again from the last checkpoint with half the micro-batch
    and twice the accumulation (the same global batch). `build`: the trainer builder (default: TRL's
    SFTTrainer, `build_trainer`). Returns the trainer that finished."""
    build = build or build_trainer
    while True:
        trainer = build(config, plan, model, tokenizer, rows, out, report=main)
        try:
            trainer.train(resume_from_checkpoint=last_checkpoint(out, note_skipped=True) if resume else None)
            return trainer
        except Exception as exc:  # torch.OutOfMemoryError only exists on recent torch
            if "out of memory" not in str(exc).lower() or plan.device != "cuda" or plan.batch_size == 1:
                raise
            release_cuda_memory()
            plan.batch_size //= 2
            plan.gradient_accumulation *= 2
            resume = last_checkpoint(out) is not None
            logger.info(
                "harness train: CUDA out of memory; retrying with micro-batch %d × accumulation %d (same global batch)",
                plan.batch_size,
                plan.gradient_accumulation,
            )


def build_trainer(config: TrainConfig, plan: Plan, model, tokenizer, rows: tuple[list, list], out: Path, report):
    from datasets import Dataset
    from trl import SFTTrainer

    train_rows, val_rows = rows
    args = sft_config(config, plan, out, has_validation=bool(val_rows))
    with warnings.catch_warnings():
        # TRL deprecates `use_liger_kernel` in favour of hub kernels, which an offline machine cannot fetch;
        # harness asks for Liger on purpose (training.liger), so the notice would only confuse.
        warnings.filterwarnings("ignore", message="`use_liger_kernel=True` is deprecated", category=FutureWarning)
        trainer = SFTTrainer(
            model=model,
            args=args,
            processing_class=tokenizer,
            data_collator=_collator(plan, tokenizer, args),
            train_dataset=Dataset.from_list(train_rows),
            eval_dataset=Dataset.from_list(val_rows) if val_rows else None,
        )
    if len(trainer.train_dataset) == 0:  # TRL drops rows whose labels are all masked
        raise ConfigError(
            f"data.max_length: {config.data.max_length} tokens leave no training example a token to learn from "
            f"(the prompt fills them); raise data.max_length or set data.loss_on: all"
        )
    return watch_trainer(trainer, model, out, config, report)


def watch_trainer(trainer, model, out: Path, config: TrainConfig, report: bool):
    """What every harness trainer gets once built: the curves of training.report_to (where `report`: rank 0,
    not a probe), early stopping, harness's progress bar, the non-finite stop, memory at every log, and fp32
    LoRA weights."""
    from harness.train.memory import add_memory_log
    from harness.train.progress import StopOnNonFinite, replace_progress_bar
    from harness.train.reporting import add_reporters
    from harness.train.selection import add_early_stopping

    if report:
        add_reporters(trainer, config.training.report_to, out)
    add_early_stopping(trainer, config)
    replace_progress_bar(trainer)
    trainer.add_callback(StopOnNonFinite(model))
    add_memory_log(trainer)
    _keep_trainable_fp32(model)
    return trainer


def sft_config(config: TrainConfig, plan: Plan, out: Path, has_validation: bool):
    from trl import SFTConfig

    d = config.data
    return SFTConfig(
        **training_arguments(config, plan, out, has_validation),
        # Padding-free rows hold no padding, so all input tokens are the non-padding ones (counting them as
        # `input_ids != pad_token_id` would miss EOS tokens where the pad token is EOS).
        include_num_input_tokens_seen="all" if plan.padding_free else "non_padding",
        max_length=d.max_length,
        packing=d.packing,
        completion_only_loss=d.loss_on == "response",
        dataset_num_proc=None,
        use_liger_kernel=plan.liger,
    )


def training_arguments(config: TrainConfig, plan: Plan, out: Path, has_validation: bool) -> dict:
    """The transformers TrainingArguments fields every harness trainer shares (SFT and sequence-to-sequence)."""
    from transformers import TrainingArguments

    from harness.train.selection import selection_arguments

    t = config.training
    args = dict(
        output_dir=str(out / "checkpoints"),
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        per_device_train_batch_size=plan.batch_size,
        per_device_eval_batch_size=plan.batch_size,
        gradient_accumulation_steps=plan.gradient_accumulation,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.scheduler,
        warmup_steps=t.warmup,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        optim=plan.optimizer,
        gradient_checkpointing=plan.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if plan.gradient_checkpointing else None,
        bf16=plan.compute_dtype == "bf16",
        fp16=plan.compute_dtype == "fp16",
        use_cpu=plan.device == "cpu",
        logging_steps=t.logging_steps,
        logging_first_step=True,
        eval_strategy=("steps" if t.eval_steps else "epoch") if has_validation else "no",
        eval_steps=t.eval_steps,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        seed=t.seed,
        data_seed=t.seed,
        report_to="none",
        # Every LoRA weight takes part in every forward; left unset, the Trainer asks DDP to search a
        # PeftModel's autograd graph for unused parameters after each backward.
        ddp_find_unused_parameters=False,
        **_sampling_argument(TrainingArguments, t.group_by_length),
    )
    return args | selection_arguments(config, has_validation)


def _collator(plan: Plan, tokenizer, args):
    """TRL's own padding-free collator, or None for TRL's default (padded) one.

    Not `SFTConfig(padding_free=True)`: without packing, TRL 1.16 then refuses a `max_length` (it would not
    truncate), so the rows would have to be tokenized and truncated outside TRL. This way TRL prepares the
    dataset exactly as in a padded run (tokenize, truncate to max_length, drop rows left without labels)
    and only the batching differs: each micro-batch becomes one row of concatenated sequences, with position
    ids restarting at every sequence and no attention mask, from which transformers builds the
    block-diagonal causal mask (a sequence never sees its neighbours)."""
    if not plan.padding_free:
        return None
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    return DataCollatorForLanguageModeling(
        pad_token_id=tokenizer.pad_token_id, padding_free=True, pad_to_multiple_of=args.pad_to_multiple_of
    )


def _sampling_argument(config_cls, group_by_length: bool) -> dict:
    # transformers 5.x replaced `group_by_length` with `train_sampling_strategy` part-way through.
    if "train_sampling_strategy" in config_cls.__dataclass_fields__:
        return {"train_sampling_strategy": "group_by_length" if group_by_length else "random"}
    return {"group_by_length": group_by_length}


def _keep_trainable_fp32(model) -> None:
    """TRL casts a quantized model's LoRA weights to bf16, but peft upcasts them to fp32 when an adapter is
    loaded (reload, --resume), so the trained adapter would compute differently from the reloaded one and a
    resumed run would diverge from an uninterrupted one. Keep the trainable weights in fp32 throughout."""
    import torch

    for param in model.parameters():
        if param.requires_grad and param.dtype in (torch.bfloat16, torch.float16):
            param.data = param.data.float()


def refuse_non_finite(trainer, config: TrainConfig, out: Path) -> None:
    """A run whose weights went NaN or infinite saves no adapter: its numbers would be meaningless."""
    from harness.train.progress import StopOnNonFinite

    watch = next(c for c in trainer.callback_handler.callbacks if isinstance(c, StopOnNonFinite))
    if watch.diverged_at is None:
        return
    last = last_checkpoint(out)
    kept = f"the last good checkpoint is {last}" if last else "no checkpoint was saved before it"
    raise HarnessError(
        f"training.learning_rate: the LoRA weights became NaN or infinite at step {watch.diverged_at}; no adapter "
        f"was saved and {kept}; lower training.learning_rate (now {config.training.learning_rate:g}) or "
        f"training.max_grad_norm, or check the data"
    )
