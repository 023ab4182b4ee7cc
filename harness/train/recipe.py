"""`harness train`: QLoRA supervised fine-tuning, read top to bottom as a recipe.

check what can be checked before anything loads → build prompt/response examples → load the base
(4-bit) → plan the run on this machine → wrap with LoRA → TRL's SFTTrainer runs the loop → save the
adapter, tokenizer and a train record. TRL does the loop; this file does the wiring, visibly and in
order, with each step's details in its own module (data, lora, plan, trainer, record).

An encoder-decoder base (T5, BART) takes the same steps with one branch: transformers' Seq2SeqTrainer
runs the loop on the prompt as source and the response as target (seq2seq, seq2seq_trainer).
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from harness.config import TrainConfig
from harness.model.families import is_encoder_decoder, packing_mismatch
from harness.model.loading import load_base
from harness.runtime.console import keep_log_in
from harness.runtime.distributed import Dist
from harness.runtime.env import Environment, detect, free_cuda_memory, torch_dtype
from harness.runtime.files import atomic_write_json
from harness.train.batch_probe import find_micro_batch
from harness.train.checkpoints import check_output
from harness.train.data import build_examples, row_token_lengths
from harness.train.lora import (
    check_target_modules,
    check_trainable_base,
    skeleton,
    use_varlen_attention,
    wrap_with_lora,
)
from harness.train.memory import memory_summary
from harness.train.plan import Plan, fit_to_memory, plan_training
from harness.train.record import RECORD_FILE, probe_logits, train_record
from harness.train.reporting import check_reporters
from harness.train.selection import check_selection, selection_record
from harness.train.seq2seq import (
    PADDED_SOURCE_TARGET,
    attention_targets,
    encoder_decoder_plan,
    memory_shape,
    refuse_decoder_only_settings,
)
from harness.train.seq2seq_trainer import build_seq2seq_trainer
from harness.train.trainer import build_trainer, refuse_non_finite, run_training

logger = logging.getLogger(__name__)


def train(config: TrainConfig, *, resume: bool = False, overwrite: bool = False) -> dict:
    """Train the adapter `config` describes into its output_dir; returns the train record ({} on a
    rank other than 0 of a multi-process run)."""
    out = Path(config.output_dir)
    dist = Dist.current()
    env = _check_before_loading(config, out, dist, resume=resume, overwrite=overwrite)

    # 1. data, before the model: a bad dataset should fail in a second, not after a load
    train_rows, val_rows, data_info = build_examples(config)
    logger.info(
        "harness train: %d training and %d validation examples from %s",
        data_info["examples"],
        data_info["validation_examples"],
        config.data.path,
    )

    # 2. the base, quantized (target modules are checked on the weightless module tree first, so a
    #    misspelt name fails before the weights load; an encoder-decoder's default ones are its own)
    tree = skeleton(config.base)
    config, targets_note = attention_targets(config, tree)
    check_target_modules(config, tree)
    base = load_base(config.base, config.quantization, env, local_rank=dist.local_rank)  # each rank its own copy
    check_target_modules(config, base.model)

    # 3. the plan on this machine and this base. The clock (tokens/s) runs from here: what plain TRL does
    #    inside SFTTrainer (LoRA wrapping) and harness's own preparation count, the load does not.
    started = time.time()
    plan = _plan(config, env, dist, base, train_rows, targets_note)
    attention = use_varlen_attention(plan, base.model)

    # 4. LoRA on the (possibly dequantized) base; `batch_size: find` probes real steps on it
    model = wrap_with_lora(config, base.model, plan)
    build = build_seq2seq_trainer if is_encoder_decoder(base.model.config) else build_trainer
    if config.training.batch_size == "find":
        find_micro_batch(config, plan, model, base.tokenizer, train_rows, dist, build)
    logger.info("harness train: %s", plan.describe())

    # 5. the loop (TRL; Seq2SeqTrainer on an encoder-decoder), with an out-of-memory back-off keeping the global batch
    if overwrite and not resume and dist.main:
        _clear_previous_run(out)
    dist.barrier()
    trainer = run_training(
        config, plan, model, base.tokenizer, (train_rows, val_rows), out, resume=resume, main=dist.main, build=build
    )
    runtime = time.time() - started
    refuse_non_finite(trainer, config, out)
    if attention is not None:  # the probe, like a reload, runs the base's own attention
        base.model.set_attn_implementation(attention)

    # 6. save the adapter, tokenizer and the record of how it was made (rank 0; the ranks' weights are equal)
    probe = probe_logits(model, base.tokenizer, train_rows[0])
    if not dist.main:
        dist.barrier()
        return {}
    model.save_pretrained(out)
    base.tokenizer.save_pretrained(out)
    record = train_record(
        config, base, plan, data_info, env, trainer.state, runtime, probe, memory_summary(trainer, env.device)
    ) | selection_record(config, trainer, out)
    return _keep_record(record, out, dist)


def _keep_record(record: dict, out: Path, dist: Dist) -> dict:
    if dist.active:
        record["world_size"] = dist.world
    atomic_write_json(out / RECORD_FILE, record)
    dist.barrier()
    return record


def _check_before_loading(config: TrainConfig, out: Path, dist: Dist, *, resume: bool, overwrite: bool) -> Environment:
    """What fails before anything loads: an output directory that would mix runs, a setting this machine
    cannot honour, a base this recipe cannot train. Also starts the run's log file."""
    # Under `accelerate launch` every rank runs this recipe (the Trainer does DDP); rank 0 alone
    # clears old output and saves the adapter and the record.
    if dist.main:
        check_output(out, resume, overwrite, RECORD_FILE)
    dist.barrier()
    keep_log_in(out / (f"train-rank{dist.rank}.log" if dist.active else "train.log"))
    env = detect()
    refuse_decoder_only_settings(config)
    check_selection(config)
    check_reporters(config)
    plan_training(config, env, dist.world)
    check_trainable_base(config)
    return env


def _plan(config: TrainConfig, env: Environment, dist: Dist, base, train_rows: list[dict], targets_note: str) -> Plan:
    """Micro-batch, padding-free batches (with varlen attention on CUDA), Liger, and on CUDA recomputation
    and a dequantized base from the memory the loaded base leaves free. An encoder-decoder trains on padded
    batches without Liger; `targets_note`: where its LoRA targets came from."""
    encoder_decoder = is_encoder_decoder(base.model.config)
    mismatch = ""
    if encoder_decoder:
        mismatch = PADDED_SOURCE_TARGET
    elif config.training.padding_free is not False or config.data.packing:
        mismatch = packing_mismatch(base.model, base.tokenizer.pad_token_id)
    plan = plan_training(
        config, env, dist.world, attention=base.model.config._attn_implementation, packing_mismatch=mismatch
    )
    if encoder_decoder:
        encoder_decoder_plan(plan, targets_note)
    if env.device == "cuda":
        _fit_to_memory(plan, config, base, train_rows, dist.local_rank)
    return plan


def _fit_to_memory(plan: Plan, config: TrainConfig, base, train_rows: list[dict], local_rank: int) -> None:
    """Measure what fit_to_memory needs: free memory beside the loaded 4-bit base, what its dequantized
    weights would take, and the training rows' token lengths."""
    from harness.model.dequantize import dequantized_bytes

    model_config = base.model.config.get_text_config()
    if is_encoder_decoder(model_config):
        shape = memory_shape(model_config, train_rows, base.tokenizer, config)
        if isinstance(shape, str):
            plan.why["memory"] = shape
            return
        lengths, hidden, intermediate, layers = shape
    else:
        lengths = row_token_lengths(train_rows, base.tokenizer, config.data.max_length)
        hidden, intermediate = model_config.hidden_size, model_config.intermediate_size
        layers = model_config.num_hidden_layers
    four_bit = config.quantization.mode in ("nf4", "fp4")
    weights = dequantized_bytes(base.model, torch_dtype(plan.compute_dtype)) if four_bit else 0
    fit_to_memory(
        plan,
        config,
        free_bytes=free_cuda_memory(local_rank),
        dequantized_bytes=weights,
        lengths=lengths,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_layers=layers,
    )


def _clear_previous_run(out: Path) -> None:
    """--overwrite: the old run's checkpoints and curves would be mixed into the new run's rotation or
    resumed later, so they go; but only here, once the data, the base and the plan have passed their
    checks, and the old adapter itself stays until the new one is saved over it."""
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    shutil.rmtree(out / "tensorboard", ignore_errors=True)
